package client

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"

	"github.com/updraft-cdn/updraft/bundlecrypt"
	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/snapshot"
	"github.com/updraft-cdn/updraft/origin/store"
)

// ReadBundlePath reads a bundle zip, or zips a folder, into memory.
func ReadBundlePath(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return os.ReadFile(path)
	}
	var buf bytes.Buffer
	if err := ZipDir(path, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// EncryptPath encrypts the bundle at path (a zip or a folder) with the
// operator's private key, after checking the plaintext zip as the origin
// checks plain uploads (it cannot check ciphertext).
func EncryptPath(path string, key *rsa.PrivateKey) (*bundlecrypt.Bundle, error) {
	zipData, err := ReadBundlePath(path)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp("", "updraft-bundle-*.zip")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(zipData)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, werr
	}
	if err := api.CheckZip(tmp.Name()); err != nil {
		return nil, err
	}
	files, err := bundlecrypt.ReadZipFiles(zipData)
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	return bundlecrypt.EncryptBundle(key, zipData, files)
}

// UploadEncrypted uploads an encrypted bundle (see origin's uploadEncrypted for
// the request's parts). Manifest files with the same ciphertext are sent once.
func (c *Client) UploadEncrypted(ctx context.Context, app, version string, eb *bundlecrypt.Bundle, opt UploadOptions) (store.Bundle, error) {
	meta := api.EncryptedMeta{SessionKey: eb.SessionKey, Checksum: eb.Checksum, KeyID: eb.KeyID,
		Manifest: make([]snapshot.ManifestEntry, len(eb.Files))}
	blobs := make(map[string][]byte, len(eb.Files))
	var order []string
	for i, f := range eb.Files {
		sum := sha256.Sum256(f.Data)
		sha := hex.EncodeToString(sum[:])
		meta.Manifest[i] = snapshot.ManifestEntry{Name: f.Name, Hash: f.Hash, Blob: sha, Size: int64(len(f.Data))}
		if _, dup := blobs[sha]; !dup {
			blobs[sha] = f.Data
			order = append(order, sha)
		}
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		pw.CloseWithError(func() error {
			w, err := mw.CreateFormField("meta")
			if err != nil {
				return err
			}
			if err := json.NewEncoder(w).Encode(meta); err != nil {
				return err
			}
			if w, err = mw.CreateFormFile("bundle", "bundle.zip.enc"); err != nil {
				return err
			}
			if _, err := w.Write(eb.Zip); err != nil {
				return err
			}
			for _, sha := range order {
				if w, err = mw.CreateFormFile("file", sha); err != nil {
					return err
				}
				if _, err := w.Write(blobs[sha]); err != nil {
					return err
				}
			}
			return mw.Close()
		}())
	}()
	defer pr.Close()
	q, err := uploadQuery(version, opt)
	if err != nil {
		return store.Bundle{}, err
	}
	var b store.Bundle
	err = c.Do(ctx, http.MethodPost, "/api/v1/apps/"+url.PathEscape(app)+"/bundles?"+q.Encode(), pr, mw.FormDataContentType(), &b)
	return b, err
}
