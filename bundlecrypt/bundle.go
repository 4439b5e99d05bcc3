package bundlecrypt

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"

	"github.com/updraft-cdn/updraft/origin/delta"
)

// File is one encrypted file of a bundle's manifest.
type File struct {
	Name string // path in the bundle, with ".br" when brotli-compressed before encryption
	Hash string // encrypted SHA-256 of the original file (hex, 512 characters)
	Data []byte // AES-128-CBC ciphertext, as the edge serves it
}

// Bundle is an encrypted bundle, ready to upload.
type Bundle struct {
	Zip        []byte // AES-128-CBC ciphertext of the plaintext zip
	SessionKey string
	Checksum   string // encrypted SHA-256 of the plaintext zip
	KeyID      string
	Files      []File // the manifest, for the plugin's per-file download
	PlainSHA   string // hex SHA-256 of the plaintext zip (shown to the operator, never uploaded)
}

// EncryptBundle encrypts a plaintext bundle zip and its per-file manifest
// (files, from delta.ReadZip) under one new session, as Capgo's CLI does for
// a delta-enabled encrypted upload: each manifest file is brotli-compressed
// first when that pays (delta.Manifest, the rule the origin uses for plain
// bundles), then encrypted with the bundle's key and IV.
func EncryptBundle(k *rsa.PrivateKey, zip []byte, files []delta.File) (*Bundle, error) {
	s, err := NewSession(k)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(zip)
	out := &Bundle{Zip: s.Encrypt(zip), SessionKey: s.SessionKey, KeyID: KeyID(&k.PublicKey), PlainSHA: fmt.Sprintf("%x", sum)}
	if out.Checksum, err = EncryptChecksum(k, sum); err != nil {
		return nil, err
	}
	m, err := delta.Manifest(files)
	if err != nil {
		return nil, err
	}
	out.Files = make([]File, len(m))
	for i, f := range m {
		h, err := s.ChecksumOfHash(f.Hash)
		if err != nil {
			return nil, err
		}
		out.Files[i] = File{Name: f.Name, Hash: h, Data: s.Encrypt(f.Data)}
	}
	return out, nil
}

// ReadZipFiles reads a plaintext zip's files for EncryptBundle.
func ReadZipFiles(zip []byte) ([]delta.File, error) {
	return delta.ReadZip(bytes.NewReader(zip), int64(len(zip)))
}
