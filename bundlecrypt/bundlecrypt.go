// Package bundlecrypt encrypts bundles end to end the way Capgo's CLI does
// (its "encryption v2"), so that the unmodified @capgo/capacitor-updater
// plugin, configured with the matching publicKey, decrypts them on the
// device. It runs on the operator's machine (`updraft bundle upload
// --encrypt-key`): the origin and the edges hold only ciphertext, the
// encrypted checksum, the session key and a 20-character key id, never the
// public key that opens the session key, nor the private key.
//
// What the scheme guarantees, stated plainly (it is Capgo's, unchanged, so
// that stock plugins take it):
//
//   - confidentiality from whoever holds only what the servers hold: the
//     AES key travels RSA-"encrypted" with the private key, which anyone
//     with the public key can undo, and the public key ships inside every
//     copy of the app. So the content is hidden from a copy of the origin's
//     disks or an edge cache, not from the app's users; file names and sizes
//     of the manifest stay in clear.
//   - authenticity only as far as the plugin checks it: a bundle whose
//     checksum does not decrypt to its SHA-256 is refused, and only the
//     private key can make one that does. But the plugin verifies only when
//     the answer carries a session_key: an answer without one (and, in
//     manifest mode, plain file hashes) is accepted on Android. So the edges
//     and the transport to them must be trusted for integrity (HTTPS, the
//     signed snapshots between origin and edges); encryption does not make
//     a compromised edge harmless.
//   - plugins 5.30 / 6.30 / 7.30 and later, every 8.x: the checksum is
//     Capgo's hex ("V3") form, which older plugins cannot verify.
//
// The format, read from Capgo's CLI (cli/src/api/crypto.ts, bundle/upload.ts,
// bundle/partial.ts) and the plugin (ios/.../CryptoCipher.swift, RSA.swift,
// android/.../CryptoCipher.java):
//
//   - keys: RSA-2048, PKCS#1 PEM, private ".capgo_key_v2", public
//     ".capgo_key_v2.pub"; the app's capacitor.config carries the public PEM
//     as plugins.CapacitorUpdater.publicKey;
//   - per bundle: a random AES-128 key and IV; the zip is AES-128-CBC with
//     PKCS#7 padding; session_key = base64(IV) ":" base64(RSA private-key
//     encryption, PKCS#1 v1.5 type 1, of the AES key);
//   - checksum = lower-case hex of the RSA private-key encryption of the 32
//     raw bytes of the plaintext zip's SHA-256 (Capgo's "V3" checksum, for
//     plugins ≥ 5.30 / 6.30 / 7.30 and every 8.x);
//   - key_id = the first 20 characters of the public key's base64 body;
//   - manifest mode: each file brotli-compressed first when worth it, then
//     AES-encrypted with the same key and IV; its file_hash is the encrypted
//     SHA-256 of the original file, like the checksum.
//
// "RSA private-key encryption with PKCS#1 v1.5 padding" is exactly what
// crypto/rsa.SignPKCS1v15 computes with hash 0 (the input signed as is), so
// no RSA is written here; AES-CBC is crypto/cipher's.
package bundlecrypt

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Capgo's key file names, in the folder where the CLI runs.
const (
	PrivateKeyFile = ".capgo_key_v2"
	PublicKeyFile  = ".capgo_key_v2.pub"
)

// KeyBits is the only RSA size the plugin decrypts (iOS hard-codes 256-byte
// blocks).
const KeyBits = 2048

// KeyIDLen is the length of a key id (Capgo's calcKeyId).
const KeyIDLen = 20

// ErrKeySize is returned for an RSA key of another size than KeyBits.
var ErrKeySize = errors.New("bundlecrypt: the key must be RSA-2048 (the plugin decrypts 256-byte blocks only)")

// GenerateKey makes a new RSA-2048 key pair.
func GenerateKey() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, KeyBits) }

// PrivatePEM encodes a private key as Capgo's CLI writes it: PKCS#1,
// "RSA PRIVATE KEY".
func PrivatePEM(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

// PublicPEM encodes a public key as the plugin's publicKey wants it:
// PKCS#1, "RSA PUBLIC KEY" (the plugin does not read SubjectPublicKeyInfo).
func PublicPEM(k *rsa.PublicKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(k)})
}

// WriteKeyFiles writes a new key pair into dir under Capgo's file names and
// returns their paths. It refuses to overwrite an existing key unless force
// is set: a lost private key means no device accepts another update.
func WriteKeyFiles(dir string, k *rsa.PrivateKey, force bool) (priv, pub string, err error) {
	priv, pub = filepath.Join(dir, PrivateKeyFile), filepath.Join(dir, PublicKeyFile)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	if !force {
		for _, p := range []string{priv, pub} {
			if _, err := os.Stat(p); err == nil {
				return "", "", fmt.Errorf("%s exists; devices configured with its public key would refuse bundles signed by a new key (use --force to replace it)", p)
			}
		}
	}
	if err := os.WriteFile(priv, PrivatePEM(k), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(pub, PublicPEM(&k.PublicKey), 0o644); err != nil {
		return "", "", err
	}
	return priv, pub, nil
}

// ParsePrivateKey reads a PEM private key: PKCS#1 ("RSA PRIVATE KEY", what
// Capgo writes) or PKCS#8 ("PRIVATE KEY"). It must be RSA-2048.
func ParsePrivateKey(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("bundlecrypt: not a PEM private key (want the .capgo_key_v2 file: -----BEGIN RSA PRIVATE KEY-----)")
	}
	var k *rsa.PrivateKey
	switch block.Type {
	case "RSA PRIVATE KEY":
		var err error
		if k, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			return nil, fmt.Errorf("bundlecrypt: private key: %w", err)
		}
	case "PRIVATE KEY":
		any, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("bundlecrypt: private key: %w", err)
		}
		var ok bool
		if k, ok = any.(*rsa.PrivateKey); !ok {
			return nil, fmt.Errorf("bundlecrypt: private key is %T, want RSA", any)
		}
	case "RSA PUBLIC KEY", "PUBLIC KEY":
		return nil, errors.New("bundlecrypt: this is a public key; encrypting needs the private key (.capgo_key_v2, not .pub)")
	default:
		return nil, fmt.Errorf("bundlecrypt: PEM block %q is not a private key", block.Type)
	}
	if k.N.BitLen() != KeyBits {
		return nil, fmt.Errorf("%w; this key has %d bits", ErrKeySize, k.N.BitLen())
	}
	return k, nil
}

// LoadPrivateKey reads and checks a private key file.
func LoadPrivateKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParsePublicKey reads a PKCS#1 "RSA PUBLIC KEY" PEM, as the plugin does.
func ParsePublicKey(data []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "RSA PUBLIC KEY" {
		return nil, errors.New("bundlecrypt: not a PKCS#1 public key (-----BEGIN RSA PUBLIC KEY-----), the only form the plugin reads")
	}
	k, err := x509.ParsePKCS1PublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("bundlecrypt: public key: %w", err)
	}
	return k, nil
}

// KeyID is the key id of a public key: the first 20 characters of the
// base64 of its PKCS#1 DER, which is what the plugin computes from its
// publicKey and sends with every update check.
func KeyID(k *rsa.PublicKey) string {
	return base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(k))[:KeyIDLen]
}

// KeyIDFromPEM computes the key id from a public key's PEM text the way
// Capgo's CLI and the iOS plugin do (headers, newlines and spaces removed,
// first 20 characters).
func KeyIDFromPEM(pemText string) string {
	r := strings.NewReplacer("-----BEGIN RSA PUBLIC KEY-----", "", "-----END RSA PUBLIC KEY-----", "", "\n", "", "\r", "", " ", "")
	s := r.Replace(pemText)
	if len(s) > KeyIDLen {
		s = s[:KeyIDLen]
	}
	return s
}

// privateEncrypt is RSA private-key encryption with PKCS#1 v1.5 type 1
// padding (Node's crypto.privateEncrypt with RSA_PKCS1_PADDING).
func privateEncrypt(k *rsa.PrivateKey, data []byte) ([]byte, error) {
	return rsa.SignPKCS1v15(nil, k, crypto.Hash(0), data)
}

// EncryptChecksum returns the checksum the plugin expects for content with
// this SHA-256: hex of the RSA private-key encryption of the 32 raw bytes.
func EncryptChecksum(k *rsa.PrivateKey, sum [sha256.Size]byte) (string, error) {
	c, err := privateEncrypt(k, sum[:])
	if err != nil {
		return "", fmt.Errorf("bundlecrypt: checksum: %w", err)
	}
	return hex.EncodeToString(c), nil
}

// Session is one bundle's AES key and IV, and the session_key that carries
// them to the device.
type Session struct {
	block      cipher.Block
	iv         [aes.BlockSize]byte
	SessionKey string // base64(IV) ":" base64(RSA private-key encryption of the AES key)
	priv       *rsa.PrivateKey
}

// NewSession draws a random AES-128 key and IV for one bundle.
func NewSession(k *rsa.PrivateKey) (*Session, error) {
	var key [16]byte
	s := &Session{priv: k}
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	if _, err := rand.Read(s.iv[:]); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	enc, err := privateEncrypt(k, key[:])
	if err != nil {
		return nil, fmt.Errorf("bundlecrypt: session key: %w", err)
	}
	s.block = block
	s.SessionKey = base64.StdEncoding.EncodeToString(s.iv[:]) + ":" + base64.StdEncoding.EncodeToString(enc)
	return s, nil
}

// Encrypt returns plain encrypted with AES-128-CBC and PKCS#7 padding (always
// 1 to 16 bytes of padding), under the session's key and IV.
func (s *Session) Encrypt(plain []byte) []byte {
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	out := make([]byte, len(plain)+pad)
	copy(out, plain)
	copy(out[len(plain):], bytes.Repeat([]byte{byte(pad)}, pad))
	cipher.NewCBCEncrypter(s.block, s.iv[:]).CryptBlocks(out, out)
	return out
}

// Checksum returns the encrypted checksum of plaintext content.
func (s *Session) Checksum(plain []byte) (string, error) {
	return EncryptChecksum(s.priv, sha256.Sum256(plain))
}

// ChecksumOfHash returns the encrypted checksum for a hex SHA-256.
func (s *Session) ChecksumOfHash(hexSum string) (string, error) {
	raw, err := hex.DecodeString(hexSum)
	if err != nil || len(raw) != sha256.Size {
		return "", fmt.Errorf("bundlecrypt: %q is not a hex SHA-256", hexSum)
	}
	return EncryptChecksum(s.priv, [sha256.Size]byte(raw))
}

// Lengths of what an encrypted bundle carries, for validation by whoever
// stores it without the key: a 16-byte IV, a 256-byte RSA block, a 512-hex
// checksum.
const (
	ChecksumHexLen = 2 * KeyBits / 8
	rsaBlockLen    = KeyBits / 8
)

// ValidSessionKey reports whether s has the form base64(16 bytes) ":"
// base64(256 bytes).
func ValidSessionKey(s string) bool {
	iv, key, ok := strings.Cut(s, ":")
	if !ok {
		return false
	}
	a, err1 := base64.StdEncoding.Strict().DecodeString(iv)
	b, err2 := base64.StdEncoding.Strict().DecodeString(key)
	return err1 == nil && err2 == nil && len(a) == aes.BlockSize && len(b) == rsaBlockLen
}

// ValidChecksum reports whether s is an encrypted checksum: 512 lower-case
// hex characters (one RSA-2048 block).
func ValidChecksum(s string) bool {
	if len(s) != ChecksumHexLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ValidKeyID reports whether s can be a key id: 1 to 20 base64 characters.
func ValidKeyID(s string) bool {
	if len(s) == 0 || len(s) > KeyIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}
