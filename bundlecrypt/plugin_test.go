package bundlecrypt

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	brrr "github.com/molecule-man/go-brrr"

	"github.com/updraft-cdn/updraft/internal/capgodevice"
)

// The device side of Capgo's encryption, as the plugin does it, is
// internal/capgodevice, written from the plugin's source independently of
// this package: what EncryptBundle produces is checked against that
// decryptor, not against itself.

func devicePublicKey(t testing.TB, pemText string) *rsa.PublicKey {
	t.Helper()
	k, err := capgodevice.PublicKey(pemText)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	rsaSwiftDecrypt       = capgodevice.RSADecrypt
	deviceDecryptChecksum = capgodevice.DecryptChecksum
	deviceDecryptFile     = capgodevice.DecryptFile
)

type vectors struct {
	PublicKeyPem     string `json:"publicKeyPem"`
	RSAPublicDecrypt []struct {
		ID    string `json:"id"`
		Input struct {
			CiphertextHex string `json:"ciphertextHex"`
		} `json:"input"`
		Expect struct {
			PlaintextHex string `json:"plaintextHex"`
		} `json:"expect"`
	} `json:"rsaPublicDecrypt"`
	DecryptChecksum []struct {
		ID    string `json:"id"`
		Input struct {
			ChecksumHex string `json:"checksumHex"`
		} `json:"input"`
		Expect struct {
			DecryptedHex string `json:"decryptedHex"`
		} `json:"expect"`
	} `json:"decryptChecksum"`
	CalcKeyID []struct {
		ID    string `json:"id"`
		Input struct {
			PublicKeyPem string `json:"publicKeyPem"`
		} `json:"input"`
		Expect struct {
			KeyID string `json:"keyId"`
		} `json:"expect"`
	} `json:"calcKeyId"`
	RSAPublicKeyLoad []struct {
		ID    string `json:"id"`
		Input struct {
			PublicKeyPem string `json:"publicKeyPem"`
		} `json:"input"`
		Expect struct {
			Loads bool `json:"loads"`
		} `json:"expect"`
	} `json:"rsaPublicKeyLoad"`
	DecryptChecksumInvalid []struct {
		ID    string `json:"id"`
		Input struct {
			ChecksumHex string `json:"checksumHex"`
		} `json:"input"`
	} `json:"decryptChecksumInvalid"`
}

// TestCapgoContractVectors runs the plugin's own contract vectors
// (Cap-go/capacitor-updater native-contract-tests/crypto-rsa.json, release
// 8.51.14, copied as testdata/capgo-crypto-rsa.json): the decryptor above
// must pass them, or it is not the plugin's; and the package's key id and
// public-key parsing must agree with them.
func TestCapgoContractVectors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "capgo-crypto-rsa.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.RSAPublicDecrypt) == 0 || len(v.DecryptChecksum) == 0 || len(v.CalcKeyID) == 0 {
		t.Fatal("vectors missing")
	}
	pub := devicePublicKey(t, v.PublicKeyPem)
	for _, c := range v.RSAPublicDecrypt {
		ct, _ := hex.DecodeString(c.Input.CiphertextHex)
		if got := hex.EncodeToString(rsaSwiftDecrypt(pub, ct)); got != c.Expect.PlaintextHex {
			t.Errorf("%s: got %s want %s", c.ID, got, c.Expect.PlaintextHex)
		}
		// The package's signing primitive is the inverse: the vector's
		// ciphertext verifies as a PKCS#1 v1.5 type 1 block of the plaintext.
		pt, _ := hex.DecodeString(c.Expect.PlaintextHex)
		if err := rsa.VerifyPKCS1v15(pub, 0, pt, ct); err != nil {
			t.Errorf("%s: not a PKCS#1 v1.5 private-key encryption: %v", c.ID, err)
		}
	}
	for _, c := range v.DecryptChecksum {
		got, err := deviceDecryptChecksum(pub, c.Input.ChecksumHex)
		if err != nil || got != c.Expect.DecryptedHex {
			t.Errorf("%s: got %s, %v want %s", c.ID, got, err, c.Expect.DecryptedHex)
		}
	}
	for _, c := range v.DecryptChecksumInvalid {
		if _, err := deviceDecryptChecksum(pub, c.Input.ChecksumHex); err == nil {
			t.Errorf("%s: accepted", c.ID)
		}
	}
	for _, c := range v.CalcKeyID {
		if got := KeyIDFromPEM(c.Input.PublicKeyPem); got != c.Expect.KeyID {
			t.Errorf("%s: KeyIDFromPEM %q want %q", c.ID, got, c.Expect.KeyID)
		}
		k, err := ParsePublicKey([]byte(c.Input.PublicKeyPem))
		if err != nil {
			t.Fatalf("%s: %v", c.ID, err)
		}
		if got := KeyID(k); got != c.Expect.KeyID {
			t.Errorf("%s: KeyID %q want %q", c.ID, got, c.Expect.KeyID)
		}
	}
	for _, c := range v.RSAPublicKeyLoad {
		_, err := ParsePublicKey([]byte(c.Input.PublicKeyPem))
		if (err == nil) != c.Expect.Loads {
			t.Errorf("%s: loads=%v want %v (%v)", c.ID, err == nil, c.Expect.Loads, err)
		}
	}
}

var testKey *rsa.PrivateKey

func key(t testing.TB) *rsa.PrivateKey {
	if testKey == nil {
		k, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		testKey = k
	}
	return testKey
}

// TestEncryptedBundleDecryptsOnDevice encrypts a real bundle (the swagger-ui
// fixture) and opens it with the device-side decryptor above, full zip and
// manifest mode.
func TestEncryptedBundleDecryptsOnDevice(t *testing.T) {
	k := key(t)
	plain, err := os.ReadFile(filepath.Join("..", "testdata", "swagger-ui-5.35.0.zip"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := ReadZipFiles(plain)
	if err != nil {
		t.Fatal(err)
	}
	eb, err := EncryptBundle(k, plain, files)
	if err != nil {
		t.Fatal(err)
	}
	// The config string the operator pastes, as the device reads it.
	pub := devicePublicKey(t, string(PublicPEM(&k.PublicKey)))
	if eb.KeyID != KeyIDFromPEM(string(PublicPEM(&k.PublicKey))) || !strings.HasPrefix(eb.KeyID, "MIIBCgKCAQEA") || len(eb.KeyID) != 20 {
		t.Fatalf("key id %q", eb.KeyID)
	}
	if bytes.Contains(eb.Zip, plain[:64]) || len(eb.Zip)%16 != 0 || len(eb.Zip) <= len(plain) {
		t.Fatalf("zip not encrypted: %d bytes from %d", len(eb.Zip), len(plain))
	}
	// Full zip: decrypt, hash, compare with the decrypted checksum.
	got, err := deviceDecryptFile(pub, eb.SessionKey, eb.Zip)
	if err != nil {
		t.Fatal(err)
	}
	want, err := deviceDecryptChecksum(pub, eb.Checksum)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(got)
	if hex.EncodeToString(sum[:]) != want || !bytes.Equal(got, plain) || want != eb.PlainSHA {
		t.Fatalf("zip: checksum %s, decrypted sha %x, equal %v", want, sum, bytes.Equal(got, plain))
	}
	// Manifest mode: every file of the zip comes back byte for byte.
	orig := map[string][]byte{}
	zr, _ := zip.NewReader(bytes.NewReader(plain), int64(len(plain)))
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		if len(b) > 0 {
			orig[f.Name] = b
		}
	}
	if len(eb.Files) != len(orig) {
		t.Fatalf("manifest has %d files, zip %d non-empty", len(eb.Files), len(orig))
	}
	brotli := 0
	for _, f := range eb.Files {
		data, err := deviceDecryptFile(pub, eb.SessionKey, f.Data)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		name := f.Name
		if strings.HasSuffix(name, ".br") {
			brotli++
			name = strings.TrimSuffix(name, ".br")
			if data, err = brrr.Decompress(data); err != nil {
				t.Fatalf("%s: brotli: %v", f.Name, err)
			}
		}
		wantHash, err := deviceDecryptChecksum(pub, f.Hash)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		fs := sha256.Sum256(data)
		if hex.EncodeToString(fs[:]) != wantHash || !bytes.Equal(data, orig[name]) {
			t.Fatalf("%s: content or hash differs", f.Name)
		}
	}
	if brotli == 0 {
		t.Fatal("no file was brotli-compressed before encryption")
	}
	// Another key's device refuses it: the checksum decrypts to garbage.
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if c, err := deviceDecryptChecksum(&other.PublicKey, eb.Checksum); err == nil && c == want {
		t.Fatal("a different public key accepted the checksum")
	}
}

func TestKeyFilesAndErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet") // created as needed
	k := key(t)
	priv, pub, err := WriteKeyFiles(dir, k, false)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(priv) != ".capgo_key_v2" || filepath.Base(pub) != ".capgo_key_v2.pub" {
		t.Fatalf("names %s %s", priv, pub)
	}
	if st, _ := os.Stat(priv); st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", st.Mode())
	}
	if _, _, err := WriteKeyFiles(dir, k, false); err == nil {
		t.Fatal("overwrote an existing key")
	}
	back, err := LoadPrivateKey(priv)
	if err != nil || !back.Equal(k) {
		t.Fatalf("reload: %v", err)
	}
	pemPub, _ := os.ReadFile(pub)
	if !strings.HasPrefix(string(pemPub), "-----BEGIN RSA PUBLIC KEY-----\n") || !strings.HasSuffix(string(pemPub), "-----END RSA PUBLIC KEY-----\n") {
		t.Fatalf("public key file is not PKCS#1 PEM:\n%s", pemPub)
	}
	// A public key where the private one is wanted, garbage, and a key of
	// another size are clear errors.
	if _, err := ParsePrivateKey(pemPub); err == nil || !strings.Contains(err.Error(), "public key") {
		t.Fatalf("public key as private: %v", err)
	}
	if _, err := ParsePrivateKey([]byte("hello")); err == nil {
		t.Fatal("garbage accepted")
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePrivateKey(PrivatePEM(small)); !errors.Is(err, ErrKeySize) {
		t.Fatalf("1024-bit key: %v", err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if _, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})); err == nil {
		t.Fatal("SubjectPublicKeyInfo accepted: the plugin cannot read it")
	}
	// PKCS#8 private keys (openssl genpkey's default) are accepted.
	p8, _ := x509.MarshalPKCS8PrivateKey(k)
	if _, err := ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})); err != nil {
		t.Fatalf("PKCS#8: %v", err)
	}
}

func TestValidators(t *testing.T) {
	k := key(t)
	s, err := NewSession(k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Checksum([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if !ValidSessionKey(s.SessionKey) || !ValidChecksum(c) || !ValidKeyID(KeyID(&k.PublicKey)) {
		t.Fatal("own output refused")
	}
	for _, bad := range []string{"", "abc", s.SessionKey[:10], strings.Replace(s.SessionKey, ":", "", 1), "AAAA:" + strings.SplitN(s.SessionKey, ":", 2)[1]} {
		if ValidSessionKey(bad) {
			t.Errorf("session key %q accepted", bad)
		}
	}
	for _, bad := range []string{"", c[:510], strings.ToUpper(c), c + "00"} {
		if ValidChecksum(bad) {
			t.Errorf("checksum %q accepted", bad)
		}
	}
	for _, bad := range []string{"", "MIIBCgKCAQEAqJikYizo1", "a b", "é"} {
		if ValidKeyID(bad) {
			t.Errorf("key id %q accepted", bad)
		}
	}
	// Two sessions never share a key or IV.
	s2, _ := NewSession(k)
	if s2.SessionKey == s.SessionKey {
		t.Fatal("session reused")
	}
}

func FuzzValidSessionKey(f *testing.F) {
	f.Add("AAAAAAAAAAAAAAAAAAAAAA==:AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidSessionKey(s) {
			iv, key, _ := strings.Cut(s, ":")
			a, _ := base64.StdEncoding.DecodeString(iv)
			b, _ := base64.StdEncoding.DecodeString(key)
			if len(a) != 16 || len(b) != 256 {
				t.Fatalf("accepted %q", s)
			}
		}
	})
}
