package delta

// Reading bundle zips safely. One set of rules decides what a bundle may
// contain, for the origin's upload check and for everything built from the
// zip (manifest, canonical archive, deltas), so that what the builder would
// refuse is refused at upload:
//
//   - every entry's path passes ValidPath (folders without their trailing
//     slash); no two entries share a path, and no file is also a folder;
//   - entries are regular files or folders: symbolic links, devices, pipes
//     and sockets are refused, and so are encrypted entries and compression
//     methods other than store and deflate (what devices can unpack);
//   - Limits bound the entry count, the total unpacked size and the
//     compression ratio, first on the sizes the zip declares, then on the
//     bytes actually decompressed (Zip.Open counts them: a zip that lies
//     about its sizes is stopped at the limit, never read further).
//
// The central directory is walked before archive/zip parses it, so that a
// zip declaring millions of entries is refused before any memory is spent
// on them.

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
)

// Limits bound what a bundle zip may unpack to. Zero fields are not checked.
type Limits struct {
	MaxEntries      int   // entries in the zip, files and folders
	MaxUncompressed int64 // bytes of all entries unpacked
	// MaxRatio bounds the whole zip: unpacked bytes per byte of zip, once it
	// unpacks to more than RatioMinSize.
	MaxRatio int
	// MaxEntryRatio bounds each entry larger than RatioMinSize: unpacked
	// bytes per compressed byte.
	MaxEntryRatio int
}

// RatioMinSize: entries (and zips) unpacking to at most this many bytes are
// not ratio-checked: a small file of repeated text may compress 1000:1
// and harms nobody.
const RatioMinSize = 1 << 20

// DefaultLimits are the origin's defaults (config.NewOrigin) and what
// ReadZip applies. Web bundles unpack to tens of MB at ratios under 10:1;
// deflate cannot exceed about 1032:1.
var DefaultLimits = Limits{MaxEntries: 20000, MaxUncompressed: 1 << 30, MaxRatio: 100, MaxEntryRatio: 100}

// Names of the limits in LimitError.
const (
	LimitEntries      = "entries"
	LimitUncompressed = "uncompressed"
	LimitRatio        = "ratio"
	LimitEntryRatio   = "entry_ratio"
)

// maxDirectoryBytes bounds the central directory read (names, extra fields
// and comments of every entry) whatever the entry limit: archive/zip keeps
// all of it in memory.
const maxDirectoryBytes = 64 << 20

// LimitError is a zip refused by one of its Limits.
type LimitError struct {
	Limit string // LimitEntries, LimitUncompressed, LimitRatio or LimitEntryRatio
	Path  string // the entry, for LimitEntryRatio
	Got   int64  // entries, bytes, or ratio (rounded down); a lower bound when the read stopped at the limit
	Max   int64
}

func (e *LimitError) Error() string {
	switch e.Limit {
	case LimitEntries:
		return fmt.Sprintf("delta: the zip has more than %d entries", e.Max)
	case LimitUncompressed:
		return fmt.Sprintf("delta: the zip unpacks to more than %d bytes", e.Max)
	case LimitRatio:
		return fmt.Sprintf("delta: the zip unpacks to %d times its size; the limit is %d", e.Got, e.Max)
	default:
		return fmt.Sprintf("delta: %s is compressed %d:1; the limit is %d:1", e.Path, e.Got, e.Max)
	}
}

// Errors of bundle content, wrapped in a *BundleError.
var (
	ErrSpecialFile = errors.New("delta: not a regular file or folder")
	ErrDuplicate   = errors.New("delta: duplicate path")
)

// BundleError is a zip refused for what it contains (as opposed to a
// failure to read it): checking or building it again gives the same error.
type BundleError struct {
	Path string // the entry concerned, if any
	Err  error  // ErrUnsafePath, ErrSpecialFile, ErrDuplicate, a *LimitError, or a zip format error
	Msg  string // what is wrong, for people
}

func (e *BundleError) Error() string {
	if e.Msg != "" {
		return "delta: " + e.Msg
	}
	return e.Err.Error()
}

func (e *BundleError) Unwrap() error { return e.Err }

// IsBundleError reports whether err is about a bundle's content (a
// *BundleError or *LimitError), which retrying cannot fix.
func IsBundleError(err error) bool {
	var be *BundleError
	var le *LimitError
	return errors.As(err, &be) || errors.As(err, &le)
}

func bundleErr(path string, err error, format string, args ...any) error {
	return &BundleError{Path: path, Err: err, Msg: fmt.Sprintf(format, args...)}
}

// Entry is a regular file of a bundle zip.
type Entry struct {
	Path       string
	Size       int64 // as the zip declares it; Zip.Open enforces it
	Compressed int64
	f          *zip.File
}

// Zip is a bundle zip whose entries passed the rules above (on their
// declared sizes; Open and Verify check the real ones).
type Zip struct {
	// Files are the bundle's regular files sorted by path, without macOS
	// resource forks (__MACOSX/): what the manifest and the canonical
	// archive hold.
	Files []Entry
	all   []Entry // every regular file, resource forks included
	lim   Limits
	size  int64
	read  int64 // bytes decompressed so far through Open
}

// OpenZip reads a bundle zip's directory and checks its entries against
// the rules above and lim.
func OpenZip(r io.ReaderAt, size int64, lim Limits) (*Zip, error) {
	r = boundedReader{r, size}
	if err := checkDirectory(r, size, lim.MaxEntries); err != nil {
		return nil, err
	}
	zr, err := zip.NewReader(r, size)
	if err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) && !errors.Is(err, errOutside) {
			return nil, err // reading the file failed, not the zip
		}
		return nil, bundleErr("", err, "not a readable zip file (%v)", err)
	}
	if len(zr.File) == 0 {
		return nil, bundleErr("", nil, "the zip is empty")
	}
	if lim.MaxEntries > 0 && len(zr.File) > lim.MaxEntries {
		return nil, &LimitError{Limit: LimitEntries, Got: int64(len(zr.File)), Max: int64(lim.MaxEntries)}
	}
	z := &Zip{lim: lim, size: size}
	kinds := make(map[string]bool, len(zr.File)) // path -> is a folder
	var total uint64
	for _, f := range zr.File {
		name, dir, err := checkEntry(f)
		if err != nil {
			return nil, err
		}
		if _, dup := kinds[name]; dup {
			return nil, bundleErr(name, ErrDuplicate, "duplicate path %q in zip", f.Name)
		}
		kinds[name] = dir
		if f.UncompressedSize64 > 1<<62 {
			return nil, bundleErr(name, zip.ErrFormat, "%q declares an impossible size", f.Name)
		}
		total += f.UncompressedSize64
		if lim.MaxUncompressed > 0 && total > uint64(lim.MaxUncompressed) {
			return nil, &LimitError{Limit: LimitUncompressed, Got: int64(min(total, 1<<62)), Max: lim.MaxUncompressed}
		}
		if dir {
			continue
		}
		e := Entry{Path: name, Size: int64(f.UncompressedSize64), Compressed: int64(min(f.CompressedSize64, uint64(size))), f: f}
		if err := z.checkRatio(e, e.Size); err != nil {
			return nil, err
		}
		z.all = append(z.all, e)
		if !strings.HasPrefix(name, "__MACOSX/") {
			z.Files = append(z.Files, e)
		}
	}
	if err := z.checkTotalRatio(int64(total)); err != nil {
		return nil, err
	}
	// A file whose path is also a folder of another entry cannot be
	// unpacked (devices fail half-way through).
	for name := range kinds {
		for p := name; ; {
			i := strings.LastIndexByte(p, '/')
			if i < 0 {
				break
			}
			p = p[:i]
			if isDir, ok := kinds[p]; ok && !isDir {
				return nil, bundleErr(p, ErrDuplicate, "%q is a file and also the folder of %q", p, name)
			}
		}
	}
	sort.Slice(z.Files, func(i, j int) bool { return z.Files[i].Path < z.Files[j].Path })
	return z, nil
}

// checkEntry applies the path and type rules to one entry. It returns the
// entry's path (without a folder's trailing slash) and whether it is a
// folder.
func checkEntry(f *zip.File) (string, bool, error) {
	mode := f.Mode()
	dir := mode.IsDir() || strings.HasSuffix(f.Name, "/")
	name := f.Name
	if dir {
		name = strings.TrimSuffix(name, "/")
	}
	if !ValidPath(name) {
		return "", false, bundleErr(f.Name, ErrUnsafePath, "unsafe path %q in zip: want a relative path of at most 1024 bytes without '.', '..' or empty segments, backslashes or NUL", f.Name)
	}
	if t := mode.Type() &^ fs.ModeDir; t != 0 {
		what := "a special file"
		if t&fs.ModeSymlink != 0 {
			what = "a symbolic link"
		}
		return "", false, bundleErr(name, ErrSpecialFile, "%q is %s; a bundle holds regular files and folders only", f.Name, what)
	}
	if f.Flags&0x1 != 0 {
		return "", false, bundleErr(name, zip.ErrAlgorithm, "%q is encrypted; devices cannot unpack it", f.Name)
	}
	if f.Method != zip.Store && f.Method != zip.Deflate {
		return "", false, bundleErr(name, zip.ErrAlgorithm, "%q uses compression method %d; devices unpack only store (0) and deflate (8)", f.Name, f.Method)
	}
	return name, dir, nil
}

func (z *Zip) checkRatio(e Entry, unpacked int64) error {
	if z.lim.MaxEntryRatio > 0 && unpacked > RatioMinSize && unpacked > int64(z.lim.MaxEntryRatio)*e.Compressed {
		return &LimitError{Limit: LimitEntryRatio, Path: e.Path, Got: unpacked / max(e.Compressed, 1), Max: int64(z.lim.MaxEntryRatio)}
	}
	return nil
}

func (z *Zip) checkTotalRatio(unpacked int64) error {
	if z.lim.MaxRatio > 0 && unpacked > RatioMinSize && unpacked > int64(z.lim.MaxRatio)*z.size {
		return &LimitError{Limit: LimitRatio, Got: unpacked / max(z.size, 1), Max: int64(z.lim.MaxRatio)}
	}
	return nil
}

// Open returns a reader of a file's content that counts what it
// decompresses: more than the entry declares, more than MaxUncompressed
// over every read of this Zip, or a ratio over the limits is an error, as
// is a CRC-32 mismatch at the end (archive/zip's check). It never reads
// past the first byte that breaks a limit.
func (z *Zip) Open(e Entry) (io.ReadCloser, error) {
	rc, err := e.f.Open()
	if err != nil {
		return nil, contentErr(e.Path, err)
	}
	return &entryReader{z: z, e: e, rc: rc, r: io.LimitReader(rc, e.Size+1)}, nil
}

// ReadAll returns a file's content (see Open). Memory grows with what is
// actually read, not with the size the zip declares.
func (z *Zip) ReadAll(e Entry) ([]byte, error) {
	rc, err := z.Open(e)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	buf.Grow(int(min(e.Size, 8<<20)))
	if _, err := buf.ReadFrom(rc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Verify decompresses every entry (resource forks included), checking the
// real sizes, ratios and CRC-32s, with bounded memory. ctx stops it.
func (z *Zip) Verify(ctx context.Context) error {
	buf := make([]byte, 64<<10)
	for _, e := range z.all {
		if err := ctx.Err(); err != nil {
			return err
		}
		rc, err := z.Open(e)
		for err == nil {
			if err = ctx.Err(); err == nil {
				_, err = rc.Read(buf)
			}
		}
		if rc != nil {
			rc.Close()
		}
		if err != io.EOF {
			return err
		}
	}
	return nil
}

type entryReader struct {
	z  *Zip
	e  Entry
	rc io.ReadCloser
	r  io.Reader
	n  int64
}

func (r *entryReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	r.z.read += int64(n)
	switch {
	case r.n > r.e.Size:
		return 0, bundleErr(r.e.Path, zip.ErrFormat, "%s: more data than the zip declares (%d bytes)", r.e.Path, r.e.Size)
	case r.z.lim.MaxUncompressed > 0 && r.z.read > r.z.lim.MaxUncompressed:
		return 0, &LimitError{Limit: LimitUncompressed, Got: r.z.read, Max: r.z.lim.MaxUncompressed}
	}
	if lerr := r.z.checkRatio(r.e, r.n); lerr != nil {
		return 0, lerr
	}
	if lerr := r.z.checkTotalRatio(r.z.read); lerr != nil {
		return 0, lerr
	}
	if errors.Is(err, zip.ErrFormat) {
		// archive/zip stops an entry at the size the zip declares.
		return n, bundleErr(r.e.Path, err, "%s: more data than the zip declares (%d bytes)", r.e.Path, r.e.Size)
	}
	if err != nil && err != io.EOF {
		err = contentErr(r.e.Path, err)
	}
	return n, err
}

// boundedReader refuses reads outside the zip (offsets computed from a
// damaged directory) with errOutside, so that what remains an I/O error
// is one.
type boundedReader struct {
	r    io.ReaderAt
	size int64
}

var errOutside = errors.New("offset outside the zip")

func (b boundedReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > b.size {
		return 0, errOutside
	}
	return b.r.ReadAt(p, off)
}

// contentErr wraps an error reading an entry: a damaged entry is a
// *BundleError, a failure to read the file holding the zip is not.
func contentErr(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && !errors.Is(err, errOutside) {
		return err
	}
	return bundleErr(path, err, "%s: damaged entry (%v)", path, err)
}

func (r *entryReader) Close() error { return r.rc.Close() }

// checkDirectory walks the zip's central directory before archive/zip
// parses it, from where archive/zip will start reading it, refusing more
// than maxEntries entries (declared or present) and a directory larger
// than maxDirectoryBytes. It reads headers in order and allocates nothing
// per entry. Errors in the zip's structure are left to archive/zip.
func checkDirectory(r io.ReaderAt, size int64, maxEntries int) error {
	end, ok := readDirectoryEnd(r, size)
	if !ok {
		return nil // archive/zip refuses it
	}
	if maxEntries > 0 && end.records > uint64(maxEntries) {
		return &LimitError{Limit: LimitEntries, Got: int64(min(end.records, 1<<62)), Max: int64(maxEntries)}
	}
	starts := []int64{end.base + int64(end.offset)}
	if end.base > 0 {
		starts = append(starts, int64(end.offset)) // archive/zip's fallback to a base of 0
	}
	for _, start := range starts {
		if start < 0 || start >= size {
			continue
		}
		br := bufio.NewReaderSize(io.NewSectionReader(r, start, size-start), 64<<10)
		var hdr [46]byte
		var n, bytes int64
		for {
			if _, err := io.ReadFull(br, hdr[:]); err != nil || binary.LittleEndian.Uint32(hdr[:4]) != 0x02014b50 {
				break
			}
			n++
			if maxEntries > 0 && n > int64(maxEntries) {
				return &LimitError{Limit: LimitEntries, Got: n, Max: int64(maxEntries)}
			}
			skip := int64(binary.LittleEndian.Uint16(hdr[28:])) + int64(binary.LittleEndian.Uint16(hdr[30:])) + int64(binary.LittleEndian.Uint16(hdr[32:]))
			bytes += 46 + skip
			if bytes > maxDirectoryBytes {
				return bundleErr("", zip.ErrFormat, "the zip's central directory is larger than %d bytes", maxDirectoryBytes)
			}
			if _, err := br.Discard(int(skip)); err != nil {
				break
			}
		}
	}
	return nil
}

type directoryEnd struct {
	records uint64
	size    uint64
	offset  uint64
	base    int64
}

// readDirectoryEnd finds the end of central directory record as
// archive/zip does (same search, same zip64 handling, same base offset).
func readDirectoryEnd(r io.ReaderAt, size int64) (directoryEnd, bool) {
	const endLen = 22
	var d directoryEnd
	var buf []byte
	var endOffset int64
	for i, bLen := range []int64{1024, 65 * 1024} {
		bLen = min(bLen, size)
		buf = make([]byte, int(bLen))
		if _, err := r.ReadAt(buf, size-bLen); err != nil && err != io.EOF {
			return d, false
		}
		if p := findEnd(buf); p >= 0 {
			buf = buf[p:]
			endOffset = size - bLen + int64(p)
			break
		}
		if i == 1 || bLen == size {
			return d, false
		}
	}
	if len(buf) < endLen {
		return d, false
	}
	le := binary.LittleEndian
	d.records = uint64(le.Uint16(buf[10:]))
	d.size = uint64(le.Uint32(buf[12:]))
	d.offset = uint64(le.Uint32(buf[16:]))
	if d.records == 0xffff || d.size == 0xffff || d.offset == 0xffffffff {
		// zip64: locator just before the end record, then the zip64 end.
		loc := endOffset - 20
		if loc >= 0 {
			lb := make([]byte, 20)
			if _, err := r.ReadAt(lb, loc); err != nil {
				return d, false
			}
			if le.Uint32(lb) == 0x07064b50 && le.Uint32(lb[4:]) == 0 && le.Uint32(lb[16:]) == 1 {
				p := int64(le.Uint64(lb[8:]))
				eb := make([]byte, 56)
				if _, err := r.ReadAt(eb, p); err != nil || le.Uint32(eb) != 0x06064b50 {
					return d, false
				}
				endOffset = p
				d.records = le.Uint64(eb[32:])
				d.size = le.Uint64(eb[40:])
				d.offset = le.Uint64(eb[48:])
			}
		}
	}
	if d.size > 1<<63-1 || d.offset > 1<<63-1 {
		return d, false
	}
	d.base = endOffset - int64(d.size) - int64(d.offset)
	return d, true
}

func findEnd(b []byte) int {
	const endLen = 22
	for i := len(b) - endLen; i >= 0; i-- {
		if b[i] == 'P' && b[i+1] == 'K' && b[i+2] == 0x05 && b[i+3] == 0x06 {
			n := int(b[i+endLen-2]) | int(b[i+endLen-1])<<8
			if n+endLen+i > len(b) {
				return -1
			}
			return i
		}
	}
	return -1
}
