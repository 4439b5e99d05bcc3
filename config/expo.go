package config

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// DefaultExpoSigningKeyID is the key id an edge puts in the expo-signature
// of the manifests it signs (--expo-signing-keyid): the app's
// codeSigningMetadata.keyid must name it.
const DefaultExpoSigningKeyID = "main"

// LoadExpoSigningKey reads the PEM RSA private key an edge signs Expo
// manifests and directives with (--expo-signing-key): PKCS#1 ("RSA
// PRIVATE KEY") or PKCS#8 ("PRIVATE KEY" holding an RSA key), of at least
// 2048 bits. The Expo client verifies with SHA256withRSA only.
func LoadExpoSigningKey(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: edge.expo_signing_key: %w", err)
	}
	k, err := ParseExpoSigningKey(data)
	if err != nil {
		return nil, fmt.Errorf("config: edge.expo_signing_key %s: %w", path, err)
	}
	return k, nil
}

// ParseExpoSigningKey parses a PEM RSA private key (PKCS#1 or PKCS#8); the
// first PEM block that is a private key counts (a certificate may come
// with it in the same file).
func ParseExpoSigningKey(data []byte) (*rsa.PrivateKey, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("want a PEM RSA private key (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY), like `updraft keys create-expo-signing` writes")
		}
		var k *rsa.PrivateKey
		switch b.Type {
		case "RSA PRIVATE KEY":
			var err error
			if k, err = x509.ParsePKCS1PrivateKey(b.Bytes); err != nil {
				return nil, fmt.Errorf("PKCS#1 key: %w", err)
			}
		case "PRIVATE KEY":
			any, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PKCS#8 key: %w", err)
			}
			var ok bool
			if k, ok = any.(*rsa.PrivateKey); !ok {
				return nil, fmt.Errorf("PKCS#8 key is a %T: Expo code signing takes RSA keys only (rsa-v1_5-sha256)", any)
			}
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the key is encrypted: give the edge an unencrypted PEM key (keep the file readable by the edge only)")
		default:
			continue
		}
		if n := k.N.BitLen(); n < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits: want at least 2048", n)
		}
		return k, nil
	}
}

// validExpoKeyID reports whether id can be an expo-signature keyid: 1–64
// printable ASCII characters other than '"' and '\' (an SFV string as is).
func validExpoKeyID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
