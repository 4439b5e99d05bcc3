package origin

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/updraft-cdn/updraft/bundlecrypt"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/snapshot"
)

var encTestKey *rsa.PrivateKey

func encKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	if encTestKey == nil {
		k, err := bundlecrypt.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		encTestKey = k
	}
	return encTestKey
}

func encryptedFixture(t *testing.T, files map[string]string) *bundlecrypt.Bundle {
	t.Helper()
	eb, err := client.EncryptPath(writeTemp(t, makeZip(t, files)), encKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return eb
}

// TestEncryptedUpload stores an end-to-end encrypted bundle: the snapshot
// carries the session key, encrypted checksum, key id and the manifest the
// CLI built; the origin stores the ciphertext as sent, builds nothing from
// it, and never uses it as a delta base.
func TestEncryptedUpload(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	if _, err := o.client.CreateApp(ctx, "com.example.app", ""); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("console.log('hello, encrypted world');\n", 600) // brotli-worthy
	eb := encryptedFixture(t, map[string]string{"index.html": "<html>1</html>", "main.js": big, "same.js": big})
	b, err := o.client.UploadEncrypted(ctx, "com.example.app", "1.0.0", eb, client.UploadOptions{Channel: "production"})
	if err != nil {
		t.Fatal(err)
	}
	if b.SessionKey != eb.SessionKey || b.Checksum != eb.Checksum || b.KeyID != eb.KeyID || b.ManifestFiles != 3 {
		t.Fatalf("stored %+v", b)
	}
	sb := o.srv.Current().Snap.App("com.example.app").Bundle("1.0.0")
	if sb == nil || !sb.Encrypted() || sb.AnswerChecksum() != eb.Checksum || sb.KeyID != eb.KeyID || len(sb.Manifest) != 3 {
		t.Fatalf("snapshot bundle %+v", sb)
	}
	for _, m := range sb.Manifest {
		if !bundlecrypt.ValidChecksum(m.Hash) {
			t.Fatalf("manifest hash %q is not encrypted", m.Hash)
		}
	}
	// The stored zip is the ciphertext, byte for byte.
	f, _, err := o.srv.blobs.Open(sb.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(stored, eb.Zip) {
		t.Fatal("stored zip differs from the uploaded ciphertext")
	}
	// A plain bundle uploaded next builds its deltas with no encrypted base,
	// and the encrypted bundle never gets a canonical archive.
	if _, err := o.client.UploadBundle(ctx, "com.example.app", "1.0.1", bytes.NewReader(makeZip(t, map[string]string{"index.html": "<html>2</html>", "main.js": big})), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	bs := waitDeltas(t, o.client, "com.example.app", "1.0.1")
	for _, x := range bs {
		switch x.Version {
		case "1.0.1":
			if len(x.Deltas) != 0 {
				t.Fatalf("delta from an encrypted base: %+v", x.Deltas)
			}
		case "1.0.0":
			if x.Canonical != "" || len(x.Deltas) != 0 {
				t.Fatalf("encrypted bundle got derived blobs: %+v", x)
			}
		}
	}
}

// rawUpload posts hand-made multipart parts to the upload endpoint.
func rawUpload(t *testing.T, o *testOrigin, version string, parts func(mw *multipart.Writer)) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	parts(mw)
	mw.Close()
	req, _ := http.NewRequest("POST", o.http.URL+"/api/v1/apps/com.example.app/bundles?version="+version, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+o.client.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e apiError
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Code
}

func TestEncryptedUploadRefusals(t *testing.T) {
	o := startOrigin(t)
	ctx := context.Background()
	if _, err := o.client.CreateApp(ctx, "com.example.app", ""); err != nil {
		t.Fatal(err)
	}
	eb := encryptedFixture(t, map[string]string{"index.html": "<html>1</html>", "app.js": "x"})
	meta := func(mod func(*EncryptedMeta)) []byte {
		var m EncryptedMeta
		m.SessionKey, m.Checksum, m.KeyID = eb.SessionKey, eb.Checksum, eb.KeyID
		for _, f := range eb.Files {
			m.Manifest = append(m.Manifest, manifestEntry(f))
		}
		if mod != nil {
			mod(&m)
		}
		b, _ := json.Marshal(m)
		return b
	}
	part := func(mw *multipart.Writer, name, file string, data []byte) {
		var w io.Writer
		if file == "" {
			w, _ = mw.CreateFormField(name)
		} else {
			w, _ = mw.CreateFormFile(name, file)
		}
		w.Write(data)
	}
	whole := func(m []byte, zip []byte, files []bundlecrypt.File) func(*multipart.Writer) {
		return func(mw *multipart.Writer) {
			part(mw, "meta", "", m)
			part(mw, "bundle", "b", zip)
			for _, f := range files {
				part(mw, "file", manifestEntry(f).Blob, f.Data)
			}
		}
	}
	cases := []struct {
		name   string
		parts  func(*multipart.Writer)
		status int
		code   string
	}{
		{"bad session key", whole(meta(func(m *EncryptedMeta) { m.SessionKey = "abc" }), eb.Zip, eb.Files), 400, "invalid_encryption"},
		{"plain checksum", whole(meta(func(m *EncryptedMeta) { m.Checksum = strings.Repeat("a", 64) }), eb.Zip, eb.Files), 400, "invalid_encryption"},
		{"key id too long", whole(meta(func(m *EncryptedMeta) { m.KeyID = strings.Repeat("A", 21) }), eb.Zip, eb.Files), 400, "invalid_encryption"},
		{"unsafe file name", whole(meta(func(m *EncryptedMeta) { m.Manifest[0].Name = "../x.js" }), eb.Zip, eb.Files), 400, "invalid_encryption"},
		{"plain zip", whole(meta(nil), makeZip(t, map[string]string{"index.html": "x"}), eb.Files), 400, "invalid_encryption"},
		{"missing file", whole(meta(nil), eb.Zip, eb.Files[:1]), 400, "invalid_upload"},
		{"tampered file", whole(meta(nil), eb.Zip, []bundlecrypt.File{eb.Files[0], {Data: append([]byte(nil), eb.Files[0].Data...)}}), 400, "invalid_upload"},
		{"file not named by its hash", func(mw *multipart.Writer) {
			part(mw, "meta", "", meta(nil))
			part(mw, "bundle", "b", eb.Zip)
			part(mw, "file", manifestEntry(eb.Files[0]).Blob, eb.Files[1].Data)
		}, 400, "checksum_mismatch"},
		{"no meta", func(mw *multipart.Writer) { part(mw, "bundle", "b", eb.Zip) }, 400, "invalid_upload"},
		{"unknown meta field", whole([]byte(`{"session_key":"x","private_key":"y"}`), eb.Zip, eb.Files), 400, "invalid_json"},
	}
	for _, c := range cases {
		status, code := rawUpload(t, o, "1.0.0", c.parts)
		if status != c.status || code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, code, c.status, c.code)
		}
	}
	// Nothing was recorded, and the well-formed upload then succeeds.
	if bs, _ := o.client.ListBundles(ctx, "com.example.app"); len(bs) != 0 {
		t.Fatalf("refused uploads left bundles: %+v", bs)
	}
	if status, code := rawUpload(t, o, "1.0.0", whole(meta(nil), eb.Zip, eb.Files)); status != 201 {
		t.Fatalf("valid upload: %d %s", status, code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for o.srv.Current().Snap.App("com.example.app").Bundle("1.0.0") == nil {
		if time.Now().After(deadline) {
			t.Fatal("not published")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func manifestEntry(f bundlecrypt.File) snapshot.ManifestEntry {
	return snapshot.ManifestEntry{Name: f.Name, Hash: f.Hash, Blob: hexSum(f.Data), Size: int64(len(f.Data))}
}

// FuzzEncryptedMeta feeds the meta part's decoder and validator arbitrary
// bytes: it must refuse or accept without panicking, and what it accepts
// must name only safe paths and valid blob ids.
func FuzzEncryptedMeta(f *testing.F) {
	f.Add([]byte(`{"session_key":"AAAAAAAAAAAAAAAAAAAAAA==:AAAA","checksum":"00","key_id":"MIIB","manifest":[{"file_name":"a.js","file_hash":"00","blob":"00","size":16}]}`))
	f.Add([]byte(`{"manifest":[{"file_name":"../../etc/passwd.br"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m EncryptedMeta
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if dec.Decode(&m) != nil {
			return
		}
		blobs, err := checkEncryptedMeta(&m)
		if err != nil {
			return
		}
		for _, e := range m.Manifest {
			for _, seg := range strings.Split(e.Name, "/") {
				if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00") {
					t.Fatalf("accepted path %q", e.Name)
				}
			}
			if _, ok := blobs[e.Blob]; !ok || e.Size%16 != 0 {
				t.Fatalf("accepted entry %+v", e)
			}
		}
	})
}
