package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/updraft-cdn/updraft/bundlecrypt"
	"github.com/updraft-cdn/updraft/internal/capgodevice"
)

// capgoCreateRSA writes a key pair exactly as Capgo's CLI does (Cap-go/capgo
// 4bc7d83f cli/src/api/crypto.ts createRSA: generateKeyPairSync('rsa',
// {modulusLength}) exported as PKCS#1 PEM; cli/src/key.ts writes them to
// .capgo_key_v2 and .capgo_key_v2.pub).
const capgoCreateRSA = `
const fs = require('fs'), path = require('path'), { generateKeyPairSync } = require('crypto');
const [dir, bits] = [process.argv[2], Number(process.argv[3])];
const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: bits });
fs.writeFileSync(path.join(dir, '.capgo_key_v2.pub'), publicKey.export({ type: 'pkcs1', format: 'pem' }));
fs.writeFileSync(path.join(dir, '.capgo_key_v2'), privateKey.export({ type: 'pkcs1', format: 'pem' }));
`

// TestCapgoKeyFilesAccepted (issue 14: "existing Capgo key files are
// accepted as they are"; "a wrong or non-2048-bit key is a clear CLI
// error"): key files made by Capgo's own key code upload with --encrypt-key
// unchanged, and a device configured with Capgo's .pub opens the answer.
func TestCapgoKeyFilesAccepted(t *testing.T) {
	node := nodeOrSkip(t)
	script := filepath.Join(t.TempDir(), "createRSA.js")
	os.WriteFile(script, []byte(capgoCreateRSA), 0o644)
	capgoKeys := func(bits string) string {
		dir := t.TempDir()
		if out, err := exec.Command(node, script, dir, bits).CombinedOutput(); err != nil {
			t.Fatalf("node: %v\n%s", err, out)
		}
		return dir
	}
	data := t.TempDir()
	r := startTestServe(t, data)
	cli(t, r, data, "app", "create", "com.example.app")
	zipPath := fixture(t, "swagger-ui-5.35.0.zip")
	plain, _ := os.ReadFile(zipPath)
	upload := func(version, key string) error {
		return run(t.Context(), []string{"bundle", "upload", zipPath, "--app", "com.example.app", "--version", version,
			"--encrypt-key", key, "--origin", "http://" + r.OriginAddr, "--data", data}, io.Discard, io.Discard)
	}
	// Non-2048-bit and garbage keys: clear errors, nothing uploaded.
	if err := upload("1.0.0", filepath.Join(capgoKeys("1024"), ".capgo_key_v2")); err == nil || !strings.Contains(err.Error(), "RSA-2048") {
		t.Fatalf("1024-bit Capgo key: %v", err)
	}
	junk := filepath.Join(t.TempDir(), ".capgo_key_v2")
	os.WriteFile(junk, []byte("not a key"), 0o600)
	if err := upload("1.0.0", junk); err == nil || !strings.Contains(err.Error(), "--encrypt-key") {
		t.Fatalf("garbage key file: %v", err)
	}
	dir := capgoKeys("2048")
	if err := upload("1.0.1", filepath.Join(dir, ".capgo_key_v2")); err != nil {
		t.Fatalf("Capgo's key file refused: %v", err)
	}
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--bundle", "1.0.1", "--default")
	pubPEM, _ := os.ReadFile(filepath.Join(dir, ".capgo_key_v2.pub"))
	keyID := bundlecrypt.KeyIDFromPEM(string(pubPEM))
	_, raw := post(t, "http://"+r.EdgeAddr+"/updates", "POST", strings.Replace(deviceBody, `"install_source"`, `"key_id":"`+keyID+`","install_source"`, 1))
	var ans struct {
		Version, URL, Checksum string
		SessionKey             string `json:"session_key"`
	}
	json.Unmarshal([]byte(raw), &ans)
	if ans.Version != "1.0.1" || ans.SessionKey == "" {
		t.Fatalf("answer: %s", raw)
	}
	dev, err := capgodevice.PublicKey(string(pubPEM)) // the publicKey config string, Capgo's file as is
	if err != nil {
		t.Fatal(err)
	}
	zip, err := capgodevice.DecryptFile(dev, ans.SessionKey, getOK(t, ans.URL))
	if err != nil || !bytes.Equal(zip, plain) {
		t.Fatalf("device with Capgo's public key: %v", err)
	}
	if sum, err := capgodevice.DecryptChecksum(dev, ans.Checksum); err != nil || sum != hexSHA(plain) {
		t.Fatalf("checksum: %s %v", sum, err)
	}
}
