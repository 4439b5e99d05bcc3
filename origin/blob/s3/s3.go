// Package s3 is a blob store in an S3-compatible bucket (AWS S3, SeaweedFS,
// MinIO, Ceph RGW…), for origins that keep their bundles off their own
// disk. It speaks S3 with github.com/minio/minio-go.
//
// Layout: blob abcdef… is the object PREFIX/ab/abcdef… (PREFIX "blobs"
// unless the URL's path names another). Objects are written once, whole,
// and never modified; the content is hashed locally while it is written
// (blob.Writer keeps it in a local temporary file), so a commit uploads a
// complete, verified file of known size: one PUT up to the part size,
// a multipart upload beyond it, reading the file part by part (memory does
// not grow with the blob). A failed upload is aborted; one cut short by a
// crash leaves its parts in the bucket, invisible and billed on AWS until
// a lifecycle rule (AbortIncompleteMultipartUpload) clears them.
//
// Garbage collection relies on modification times (see blob.Store.Delete).
// An object's Last-Modified is its last commit or touch: S3 has no "set
// mtime", so Touch and a commit of content already stored copy the object
// onto itself with replaced metadata, which S3 (and SeaweedFS, as a
// metadata-only update) records as a new Last-Modified without sending
// the content again. Last-Modified comes from the S3 server's clock, and
// garbage collection compares it with a cutoff from the origin's: their
// skew is taken off the grace period, harmless for grace periods of
// minutes or more.
//
// The lock that orders a commit of content already stored against Delete's
// "old enough? remove" (see commit) is in this process: with several
// origins on one bucket, run garbage collection on one of them, and know
// that a collection racing another origin's re-upload of the very blob it
// removes can still take it (S3 has no portable conditional delete).
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/updraft-cdn/updraft/origin/blob"
)

// DefaultPartSize is the multipart upload's part size: a blob up to it is
// one PUT. Each part is read from the temporary file as it is sent, so it
// bounds requests, not memory; 16 MiB keeps a 512 MiB bundle at 32 parts.
const DefaultPartSize = 16 << 20

// DefaultPrefix is where blobs go in the bucket unless the URL says.
const DefaultPrefix = "blobs"

// lastModifiedResolution: S3 reports Last-Modified in whole seconds (an
// HTTP date), and SeaweedFS stores it so. Delete treats an object as
// modified up to the end of its second, so it never takes a blob touched
// after the cutoff in the same second.
const lastModifiedResolution = time.Second

// copyLimit is the largest object one CopyObject may copy (S3's limit);
// larger ones are touched with a multipart copy.
const copyLimit = 5 << 30

// Config says where the bucket is and how to reach it.
type Config struct {
	Bucket   string
	Prefix   string // key prefix without slashes at the ends; "" means DefaultPrefix
	Endpoint string // HOST[:PORT]
	Region   string // "": found by the client (GetBucketLocation) as needed
	Insecure bool   // plain HTTP instead of HTTPS
	// Create creates the bucket when it does not exist; otherwise a
	// missing bucket is an error at Open (a typo in the bucket name should
	// not start an origin on an empty bucket).
	Create bool
	// Creds are the credentials; nil: AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) from the environment.
	Creds *credentials.Credentials
	// TempDir holds writes in progress (local files). Required.
	TempDir string
	// PartSize is the multipart part size; 0: DefaultPartSize.
	PartSize uint64
	// Transport, when set, carries the requests (tests count bytes with it).
	Transport http.RoundTripper
}

// ParseURL reads s3://BUCKET[/PREFIX]?endpoint=HOST:PORT&region=R&insecure=1&create=1.
// endpoint defaults to s3.amazonaws.com; it may also be written
// http://HOST:PORT (meaning insecure=1) or https://HOST:PORT.
// Unknown parameters are errors, so a typo does not go unnoticed.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "s3" {
		return Config{}, fmt.Errorf("want s3://BUCKET?endpoint=HOST:PORT, not a %q URL", u.Scheme)
	}
	if u.User != nil {
		return Config{}, errors.New("credentials do not go in the URL (it shows in process lists and logs): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if u.Host == "" {
		return Config{}, errors.New("no bucket: want s3://BUCKET?endpoint=HOST:PORT")
	}
	c := Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Endpoint: "s3.amazonaws.com"}
	q := u.Query()
	flag := func(name string) (bool, error) {
		switch v := q.Get(name); v {
		case "", "0", "false":
			return false, nil
		case "1", "true":
			return true, nil
		default:
			return false, fmt.Errorf("%s=%q: want 1 or 0", name, v)
		}
	}
	for k := range q {
		switch k {
		case "endpoint", "region", "insecure", "create":
		default:
			return Config{}, fmt.Errorf("unknown parameter %q (known: endpoint, region, insecure, create)", k)
		}
	}
	if c.Insecure, err = flag("insecure"); err != nil {
		return Config{}, err
	}
	if c.Create, err = flag("create"); err != nil {
		return Config{}, err
	}
	c.Region = q.Get("region")
	if ep := q.Get("endpoint"); ep != "" {
		if scheme, hostPort, ok := strings.Cut(ep, "://"); ok {
			switch scheme {
			case "http":
				c.Insecure = true
			case "https":
				if c.Insecure {
					return Config{}, errors.New("endpoint https://… contradicts insecure=1")
				}
			default:
				return Config{}, fmt.Errorf("endpoint %q: want HOST:PORT, http://HOST:PORT or https://HOST:PORT", ep)
			}
			ep = strings.TrimSuffix(hostPort, "/")
		}
		if ep == "" || strings.ContainsAny(ep, "/?#@") {
			return Config{}, fmt.Errorf("endpoint %q: want HOST:PORT", q.Get("endpoint"))
		}
		c.Endpoint = ep
	}
	return c, nil
}

// Store is a blob store in a bucket.
type Store struct {
	client   *minio.Client
	bucket   string
	prefix   string // with a trailing slash
	tmp      string
	partSize uint64
	locks    keyLocks
}

var _ blob.Store = (*Store)(nil)

// Open checks that the bucket is there and answers these credentials
// (creating it if cfg.Create), cleans cfg.TempDir of writes left by a
// crash, and returns the store. Its errors say what is wrong: no such
// bucket, an unknown access key, a wrong secret, an unreachable endpoint.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("no bucket")
	}
	if cfg.TempDir == "" {
		return nil, errors.New("no folder for writes in progress")
	}
	creds := cfg.Creds
	if creds == nil {
		creds = credentials.NewEnvAWS()
		if v, _ := creds.GetWithContext(nil); v.AccessKeyID == "" || v.SecretAccessKey == "" {
			return nil, errors.New("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		}
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix == "" {
		prefix = DefaultPrefix
	}
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	tr := cfg.Transport
	if tr == nil {
		t, err := minio.DefaultTransport(!cfg.Insecure)
		if err != nil {
			return nil, err
		}
		tr = t
	}
	opts := &minio.Options{Creds: creds, Secure: !cfg.Insecure, Region: cfg.Region, Transport: tr}
	client, err := minio.New(cfg.Endpoint, opts)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %v", cfg.Endpoint, err)
	}
	// The start-up check does not retry: a wrong endpoint or key is an
	// error now, not after the client's ten retries with back-off.
	probeOpts := *opts
	probeOpts.MaxRetries = 1
	probe, err := minio.New(cfg.Endpoint, &probeOpts)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %v", cfg.Endpoint, err)
	}
	s := &Store{client: client, bucket: cfg.Bucket, prefix: prefix + "/", tmp: cfg.TempDir, partSize: partSize}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.check(cctx, probe, cfg); err != nil {
		return nil, err
	}
	if err := blob.CleanTemp(cfg.TempDir); err != nil {
		return nil, fmt.Errorf("folder for writes in progress: %w", err)
	}
	return s, nil
}

// check lists at most one key of the bucket: a GET, whose error body says
// why S3 refused (a HEAD would only give a status code).
func (s *Store) check(ctx context.Context, probe *minio.Client, cfg Config) error {
	err := listOne(ctx, probe, s.bucket, s.prefix)
	if err != nil && cfg.Create && errCode(err) == "NoSuchBucket" {
		if err := probe.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil && errCode(err) != "BucketAlreadyOwnedByYou" {
			return s.explain(err, cfg, probe)
		}
		err = listOne(ctx, probe, s.bucket, s.prefix)
	}
	if err != nil {
		return s.explain(err, cfg, probe)
	}
	return nil
}

func listOne(ctx context.Context, c *minio.Client, bucket, prefix string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing after its first answer
	for obj := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, MaxKeys: 1}) {
		return obj.Err
	}
	return nil
}

// explain turns a refused start-up check into what the operator must fix.
func (s *Store) explain(err error, cfg Config, c *minio.Client) error {
	scheme := "https"
	if cfg.Insecure {
		scheme = "http"
	}
	where := fmt.Sprintf("%s://%s", scheme, cfg.Endpoint)
	key := ""
	if v, e := c.GetCreds(); e == nil {
		key = v.AccessKeyID
	}
	switch errCode(err) {
	case "NoSuchBucket":
		return fmt.Errorf("bucket %q does not exist at %s: create it, or add create=1 to the URL to let the origin create it", s.bucket, where)
	case "InvalidAccessKeyId":
		return fmt.Errorf("%s does not know access key %q (AWS_ACCESS_KEY_ID): %v", where, key, err)
	case "SignatureDoesNotMatch":
		return fmt.Errorf("%s refused the request signature: wrong secret key (AWS_SECRET_ACCESS_KEY) for access key %q, or the wrong region: %v", where, key, err)
	case "AccessDenied", "AllAccessDisabled":
		return fmt.Errorf("%s denied access key %q listing bucket %q: the credentials are wrong or lack permission: %v", where, key, s.bucket, err)
	case "AuthorizationHeaderMalformed", "InvalidRegion":
		return fmt.Errorf("%s refused the region %q (set region= in the URL to the bucket's): %v", where, cfg.Region, err)
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("cannot reach the S3 endpoint %s: %v", where, err)
	}
	if resp := errResponse(err); resp != nil && resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("%s refused access key %q (HTTP 403): %v", where, key, err)
	}
	return fmt.Errorf("%s: listing bucket %q failed: %v", where, s.bucket, err)
}

func errResponse(err error) *minio.ErrorResponse {
	var r minio.ErrorResponse
	if errors.As(err, &r) {
		return &r
	}
	var p *minio.ErrorResponse
	if errors.As(err, &p) {
		return p
	}
	return nil
}

func errCode(err error) string {
	if r := errResponse(err); r != nil {
		return r.Code
	}
	return ""
}

// notFound: the object is not there (but the bucket is).
func notFound(err error) bool {
	r := errResponse(err)
	if r == nil {
		return false
	}
	return r.Code == "NoSuchKey" || (r.StatusCode == http.StatusNotFound && r.Code != "NoSuchBucket")
}

func (s *Store) key(sha string) string { return s.prefix + sha[:2] + "/" + sha }

// Stat returns the blob's size (a HEAD request), or blob.ErrNotFound.
func (s *Store) Stat(sha string) (blob.Info, error) {
	if !blob.ValidHash(sha) {
		return blob.Info{}, blob.ErrNotFound
	}
	st, err := s.client.StatObject(context.Background(), s.bucket, s.key(sha), minio.StatObjectOptions{})
	if notFound(err) {
		return blob.Info{}, blob.ErrNotFound
	}
	if err != nil {
		return blob.Info{}, fmt.Errorf("blob: stat %s: %w", sha, err)
	}
	return blob.Info{SHA256: sha, Size: st.Size}, nil
}

// Open returns a reader of the blob after a HEAD request; it fetches
// content only as it is read, in ranges (see reader).
func (s *Store) Open(sha string) (blob.Reader, blob.Info, error) {
	info, err := s.Stat(sha)
	if err != nil {
		return nil, blob.Info{}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &reader{s: s, sha: sha, key: s.key(sha), size: info.Size, ctx: ctx, cancel: cancel, window: minWindow}, info, nil
}

// Create starts a new blob write of at most max bytes (max <= 0: unbounded).
func (s *Store) Create(max int64) (*blob.Writer, error) {
	return blob.NewWriter(s.tmp, max, s.commit)
}

// Put stores everything read from r (at most max bytes; max <= 0: unbounded).
func (s *Store) Put(r io.Reader, max int64) (blob.Info, error) {
	return blob.Put(s, r, max)
}

// commit uploads the verified temporary file, or, when the object is
// already there with the right size, refreshes its Last-Modified instead
// (garbage collection must not take old content referenced again before
// the reference is written). It holds the blob's lock throughout, which
// Delete takes too: a removal cannot fall between finding the object and
// refreshing it, nor remove the object an upload just stored; concurrent
// commits of one blob upload it once.
func (s *Store) commit(f *os.File, info blob.Info) (bool, error) {
	ctx := context.Background()
	key := s.key(info.SHA256)
	unlock := s.locks.lock(info.SHA256)
	defer unlock()
	st, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	switch {
	case err == nil && st.Size == info.Size:
		if err := s.refresh(ctx, key, st.Size); err != nil {
			return false, fmt.Errorf("blob: commit %s: refresh: %w", info.SHA256, err)
		}
		return false, nil
	case err != nil && !notFound(err):
		return false, fmt.Errorf("blob: commit %s: %w", info.SHA256, err)
	}
	// Absent (or a wrong size, which content addressing rules out unless
	// something else wrote there): upload.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, fmt.Errorf("blob: commit %s: %w", info.SHA256, err)
	}
	up, err := s.client.PutObject(ctx, s.bucket, key, f, info.Size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    s.partSize,
	})
	if err != nil {
		return false, fmt.Errorf("blob: commit %s: upload: %w", info.SHA256, err)
	}
	if up.Size != info.Size {
		return false, fmt.Errorf("blob: commit %s: stored %d bytes of %d", info.SHA256, up.Size, info.Size)
	}
	return false, nil
}

// refresh copies an object onto itself with replaced metadata: the only
// portable way to give an S3 object a new Last-Modified. The copy is done
// by the server (S3 copies in place; SeaweedFS updates the metadata only),
// nothing is sent but headers. Objects above S3's 5 GiB copy limit take a
// multipart copy.
func (s *Store) refresh(ctx context.Context, key string, size int64) error {
	dst := minio.CopyDestOptions{
		Bucket:          s.bucket,
		Object:          key,
		ReplaceMetadata: true,
		// A changing value: S3 refuses a copy onto itself that changes nothing.
		UserMetadata: map[string]string{"Updraft-Touched": time.Now().UTC().Format(time.RFC3339Nano)},
		ContentType:  "application/octet-stream",
	}
	src := minio.CopySrcOptions{Bucket: s.bucket, Object: key}
	var err error
	if size > copyLimit {
		_, err = s.client.ComposeObject(ctx, dst, src)
	} else {
		_, err = s.client.CopyObject(ctx, dst, src)
	}
	return err
}

// Touch refreshes a stored blob's Last-Modified (absent: no error),
// restarting its garbage-collection grace period.
func (s *Store) Touch(sha string) error {
	if !blob.ValidHash(sha) {
		return blob.ErrNotFound
	}
	ctx := context.Background()
	key := s.key(sha)
	unlock := s.locks.lock(sha)
	defer unlock()
	st, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if notFound(err) {
		return nil
	}
	if err == nil {
		err = s.refresh(ctx, key, st.Size)
	}
	if notFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("blob: touch %s: %w", sha, err)
	}
	return nil
}

// Delete removes a blob whose Last-Modified (to the end of its second) is
// not after cutoff. Unlike a file, an object being downloaded is not kept
// for its readers: a reader asking for more of it afterwards gets an error.
func (s *Store) Delete(sha string, cutoff time.Time) (int64, bool, error) {
	if !blob.ValidHash(sha) {
		return 0, false, blob.ErrNotFound
	}
	ctx := context.Background()
	key := s.key(sha)
	unlock := s.locks.lock(sha)
	defer unlock()
	st, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if notFound(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("blob: delete %s: %w", sha, err)
	}
	if st.LastModified.Add(lastModifiedResolution).After(cutoff) {
		return 0, false, nil
	}
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil && !notFound(err) {
		return 0, false, fmt.Errorf("blob: delete %s: %w", sha, err)
	}
	return st.Size, true, nil
}

// Remove deletes a blob (absent: no error).
func (s *Store) Remove(sha string) error {
	if !blob.ValidHash(sha) {
		return blob.ErrNotFound
	}
	unlock := s.locks.lock(sha)
	defer unlock()
	err := s.client.RemoveObject(context.Background(), s.bucket, s.key(sha), minio.RemoveObjectOptions{})
	if err != nil && !notFound(err) {
		return fmt.Errorf("blob: remove %s: %w", sha, err)
	}
	return nil
}

// Walk lists the bucket under the prefix; mtime is the listing's
// Last-Modified. Multipart uploads in progress are not listed (they are
// not objects yet), nor is anything that is not named like a blob.
func (s *Store) Walk(fn func(sha string, size int64, mtime time.Time) error) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends the listing when fn stops the walk
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, Recursive: true}) {
		if obj.Err != nil {
			return fmt.Errorf("blob: walk: %w", obj.Err)
		}
		dir, sha, ok := strings.Cut(strings.TrimPrefix(obj.Key, s.prefix), "/")
		if !ok || !blob.ValidHash(sha) || sha[:2] != dir {
			continue
		}
		if err := fn(sha, obj.Size, obj.LastModified); err != nil {
			return err
		}
	}
	return nil
}

// keyLocks is a mutex per blob, for the blobs in use only.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	refs int
}

func (k *keyLocks) lock(sha string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*keyLock)
	}
	l := k.m[sha]
	if l == nil {
		l = &keyLock{}
		k.m[sha] = l
	}
	l.refs++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, sha)
		}
		k.mu.Unlock()
	}
}
