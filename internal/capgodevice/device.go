// Package capgodevice is the device side of Capgo's bundle encryption,
// re-implemented from the plugin's source for tests: it decrypts what
// bundlecrypt (and the origin and edges serving its output) produce the way
// an unmodified @capgo/capacitor-updater does, independently of bundlecrypt:
//
//   - RSA "public decrypt" as Cap-go/capacitor-updater
//     ios/Sources/CapacitorUpdaterPlugin/RSA.swift (ManualRSAPublicKey.decrypt)
//     computes it: m = c^e mod n left-padded to 256 bytes, then, when it
//     starts 00 01, everything after the first 00 found from index 2;
//   - the publicKey config string must start with the PKCS#1 header
//     (CryptoCipher.decryptFile refuses anything else);
//   - the session key split at ':' into base64 IV and base64 RSA block, the
//     AES key required to be 16 bytes, AES-CBC with PKCS#7 (CryptoCipher.swift
//     decryptFile; android CryptoCipher.java "AES/CBC/PKCS5Padding");
//   - the checksum decoded as hex when it is all hex digits (else base64),
//     required to be 256 bytes, decrypted, returned as lower-case hex
//     (CryptoCipher.decryptChecksum).
//
// It is test support, kept out of the binary's code paths (nothing outside
// tests imports it).
package capgodevice

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// PublicKey parses the publicKey config string as the plugin does.
func PublicKey(pemText string) (*rsa.PublicKey, error) {
	if !strings.HasPrefix(pemText, "-----BEGIN RSA PUBLIC KEY-----") {
		return nil, errors.New("publicKey does not start with the PKCS#1 header")
	}
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, errors.New("publicKey: no PEM block")
	}
	return x509.ParsePKCS1PublicKey(block.Bytes)
}

// RSADecrypt is RSA.swift's public-key decryption.
func RSADecrypt(k *rsa.PublicKey, c []byte) []byte {
	m := new(big.Int).Exp(new(big.Int).SetBytes(c), big.NewInt(int64(k.E)), k.N)
	out := m.FillBytes(make([]byte, 256))
	if out[0] == 0x00 && out[1] == 0x01 {
		for i := 2; i < len(out); i++ {
			if out[i] == 0x00 {
				return out[i+1:]
			}
		}
	}
	return out
}

// DecryptChecksum decrypts a checksum or file hash to lower-case hex.
func DecryptChecksum(k *rsa.PublicKey, checksum string) (string, error) {
	var raw []byte
	var err error
	if strings.Trim(checksum, "0123456789abcdefABCDEF") == "" {
		raw, err = hex.DecodeString(checksum)
	} else {
		raw, err = base64.StdEncoding.DecodeString(checksum)
	}
	if err != nil {
		return "", err
	}
	if len(raw) != 256 {
		return "", fmt.Errorf("checksum is %d bytes, not an RSA-2048 block: not encrypted", len(raw))
	}
	return hex.EncodeToString(RSADecrypt(k, raw)), nil
}

// DecryptFile decrypts a downloaded zip or manifest file with the bundle's
// session key.
func DecryptFile(k *rsa.PublicKey, sessionKey string, data []byte) ([]byte, error) {
	parts := strings.Split(sessionKey, ":")
	if len(parts) != 2 {
		return nil, errors.New("session key: want IV:KEY")
	}
	iv, err1 := base64.StdEncoding.DecodeString(parts[0])
	encKey, err2 := base64.StdEncoding.DecodeString(parts[1])
	if err1 != nil || err2 != nil || len(iv) != 16 {
		return nil, errors.New("session key: bad base64 or IV length")
	}
	key := RSADecrypt(k, encKey)
	if len(key) != 16 {
		return nil, fmt.Errorf("session key decrypts to %d bytes, want 16", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 || len(data)%16 != 0 {
		return nil, errors.New("ciphertext is not whole AES blocks")
	}
	out := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, data)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > 16 || !bytes.Equal(out[len(out)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, errors.New("bad PKCS#7 padding")
	}
	return out[:len(out)-pad], nil
}
