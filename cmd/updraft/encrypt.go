package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/updraft-cdn/updraft/bundlecrypt"
	"github.com/updraft-cdn/updraft/origin/client"
	"github.com/updraft-cdn/updraft/origin/store"
)

// createBundleKey writes a new RSA-2048 pair in Capgo's files and formats
// and prints the capacitor.config line the app needs.
func createBundleKey(dir string, force bool, stdout io.Writer) error {
	k, err := bundlecrypt.GenerateKey()
	if err != nil {
		return err
	}
	priv, pub, err := bundlecrypt.WriteKeyFiles(dir, k, force)
	if err != nil {
		return fmt.Errorf("keys create-bundle-key: %w", err)
	}
	line, _ := json.Marshal(string(bundlecrypt.PublicPEM(&k.PublicKey)))
	fmt.Fprintf(stdout, "private key: %s (keep it secret, out of the app and the repository; upload with --encrypt-key %s)\n", priv, priv)
	fmt.Fprintf(stdout, "public key:  %s (key id %s)\n\n", pub, bundlecrypt.KeyID(&k.PublicKey))
	fmt.Fprintf(stdout, "capacitor.config.json, plugins.CapacitorUpdater:\n  \"publicKey\": %s\n", line)
	return nil
}

// uploadEncrypted encrypts a bundle on this machine with the private key in
// keyPath and uploads the ciphertext. When the matching ".pub" file lies
// next to the key it must be the key's public half: a mismatch would ship a
// bundle that no device configured from that file accepts.
func uploadEncrypted(ctx context.Context, c *client.Client, app, version, path, keyPath string, opt client.UploadOptions, stderr io.Writer) (store.Bundle, error) {
	key, err := bundlecrypt.LoadPrivateKey(keyPath)
	if err != nil {
		return store.Bundle{}, fmt.Errorf("--encrypt-key: %w", err)
	}
	if pubData, err := os.ReadFile(keyPath + ".pub"); err == nil {
		pub, err := bundlecrypt.ParsePublicKey(pubData)
		if err != nil {
			return store.Bundle{}, fmt.Errorf("--encrypt-key: %s.pub: %w", keyPath, err)
		}
		if !pub.Equal(&key.PublicKey) {
			return store.Bundle{}, fmt.Errorf("--encrypt-key: %s.pub is not the public half of %s; devices configured with it would refuse this bundle", keyPath, filepath.Base(keyPath))
		}
	}
	eb, err := client.EncryptPath(path, key)
	if err != nil {
		return store.Bundle{}, err
	}
	fmt.Fprintf(stderr, "encrypted %s with key id %s: %d manifest files, plaintext zip sha256 %s\n", path, eb.KeyID, len(eb.Files), eb.PlainSHA)
	return c.UploadEncrypted(ctx, app, version, eb, opt)
}
