package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	brrr "github.com/molecule-man/go-brrr"

	"github.com/updraft-cdn/updraft/bundlecrypt"
	"github.com/updraft-cdn/updraft/internal/capgodevice"
)

// nodeDevice is the device side of Capgo's encryption written with Node's
// crypto, the library Capgo's CLI itself uses (cli/src/api/crypto.ts):
// publicDecrypt with RSA_PKCS1_PADDING opens the session key and the
// checksums; aes-128-cbc decrypts the zip and each manifest file, which is
// brotli-decompressed when its name ends in ".br" (the plugin's order:
// CapgoUpdater.swift downloadManifestFile). It prints one JSON line.
const nodeDevice = `
const fs = require('fs'), crypto = require('crypto'), zlib = require('zlib'), path = require('path');
const dir = process.argv[2];
const pub = fs.readFileSync(path.join(dir, 'public.pem'), 'utf8');
const ans = JSON.parse(fs.readFileSync(path.join(dir, 'answer.json'), 'utf8'));
const pd = (buf) => crypto.publicDecrypt({key: pub, padding: crypto.constants.RSA_PKCS1_PADDING}, buf);
const [ivB64, keyB64] = ans.session_key.split(':');
const aesKey = pd(Buffer.from(keyB64, 'base64'));
const iv = Buffer.from(ivB64, 'base64');
const dec = (buf) => { const d = crypto.createDecipheriv('aes-128-cbc', aesKey, iv); return Buffer.concat([d.update(buf), d.final()]); };
const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex');
const zip = dec(fs.readFileSync(path.join(dir, 'bundle.bin')));
const out = {aesKeyBytes: aesKey.length, zipSha: sha(zip), checksum: pd(Buffer.from(ans.checksum, 'hex')).toString('hex'), files: 0, filesOK: 0, brotli: 0};
for (const [i, m] of (ans.manifest || []).entries()) {
  let data = dec(fs.readFileSync(path.join(dir, 'file-' + i)));
  if (m.file_name.endsWith('.br')) { data = zlib.brotliDecompressSync(data); out.brotli++; }
  out.files++;
  if (sha(data) === pd(Buffer.from(m.file_hash, 'hex')).toString('hex')) out.filesOK++;
}
console.log(JSON.stringify(out));
`

func nodeOrSkip(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("UPDRAFT_REQUIRE_NODE") != "" {
			t.Fatal("node is required (UPDRAFT_REQUIRE_NODE is set) but not installed")
		}
		t.Skip("node not installed: the independent Node.js crypto check is skipped")
	}
	return node
}

func getOK(t *testing.T, url string) []byte {
	t.Helper()
	resp, b := get(t, url)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: HTTP %d %s", url, resp.StatusCode, b)
	}
	return b
}

// TestEncryptedBundleEndToEnd follows the operator's path: a Capgo-format
// key pair from `keys create-bundle-key`, `bundle upload --encrypt-key`, a
// device's update check at the edge, the downloads; then Node's crypto,
// acting as the device with the publicKey the command printed, opens the
// live answer: session key, checksum, zip, every manifest file.
func TestEncryptedBundleEndToEnd(t *testing.T) {
	data := t.TempDir()
	r := startTestServe(t, data)
	keys := t.TempDir()
	var kout bytes.Buffer
	if err := run(t.Context(), []string{"keys", "create-bundle-key", "--dir", keys}, &kout, io.Discard); err != nil {
		t.Fatal(err)
	}
	// The printed config line is the public key file's PEM as a JSON string.
	pubPEM, err := os.ReadFile(filepath.Join(keys, ".capgo_key_v2.pub"))
	if err != nil {
		t.Fatal(err)
	}
	line, _ := json.Marshal(string(pubPEM))
	if !strings.Contains(kout.String(), `"publicKey": `+string(line)) {
		t.Fatalf("keys output lacks the config line:\n%s", kout.String())
	}
	if err := run(t.Context(), []string{"keys", "create-bundle-key", "--dir", keys}, io.Discard, io.Discard); err == nil {
		t.Fatal("create-bundle-key overwrote an existing key")
	}

	cli(t, r, data, "app", "create", "com.example.app")
	zipPath := fixture(t, "swagger-ui-5.35.0.zip")
	plain, _ := os.ReadFile(zipPath)
	// The public key where the private one is wanted is a clear CLI error.
	var errb bytes.Buffer
	err = run(t.Context(), []string{"bundle", "upload", zipPath, "--app", "com.example.app", "--version", "1.0.0",
		"--encrypt-key", filepath.Join(keys, ".capgo_key_v2.pub"), "--origin", "http://" + r.OriginAddr, "--data", data}, io.Discard, &errb)
	if err == nil || !strings.Contains(err.Error(), "public key") {
		t.Fatalf("upload with the public key: %v", err)
	}
	cli(t, r, data, "bundle", "upload", zipPath, "--app", "com.example.app", "--version", "1.0.1", "--encrypt-key", filepath.Join(keys, ".capgo_key_v2"))
	cli(t, r, data, "channel", "set", "production", "--app", "com.example.app", "--bundle", "1.0.1", "--default")

	keyID := bundlecrypt.KeyIDFromPEM(string(pubPEM))
	body := strings.Replace(deviceBody, `"install_source"`, `"key_id":"`+keyID+`","install_source"`, 1)
	resp, err := http.Post("http://"+r.EdgeAddr+"/updates", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ans struct {
		Version    string `json:"version"`
		URL        string `json:"url"`
		SessionKey string `json:"session_key"`
		Checksum   string `json:"checksum"`
		Manifest   []struct {
			Name string `json:"file_name"`
			Hash string `json:"file_hash"`
			URL  string `json:"download_url"`
		} `json:"manifest"`
		DeltaURL string `json:"delta_url"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil || ans.Version != "1.0.1" {
		t.Fatalf("answer: %v %s", err, raw)
	}
	if !bundlecrypt.ValidSessionKey(ans.SessionKey) || !bundlecrypt.ValidChecksum(ans.Checksum) || len(ans.Manifest) == 0 || ans.DeltaURL != "" {
		t.Fatalf("answer is not an encrypted bundle's: %s", raw[:min(len(raw), 600)])
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "public.pem"), pubPEM, 0o644)
	os.WriteFile(filepath.Join(dir, "answer.json"), raw, 0o644)
	zipCT := getOK(t, ans.URL)
	if bytes.Contains(zipCT, plain[:256]) {
		t.Fatal("the edge serves plaintext")
	}
	os.WriteFile(filepath.Join(dir, "bundle.bin"), zipCT, 0o644)
	for i, m := range ans.Manifest {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%d", i)), getOK(t, m.URL), 0o644)
	}
	// The plugin's decrypt path re-implemented in Go (internal/capgodevice,
	// from RSA.swift and CryptoCipher): the live answer and the edge's
	// downloads open to the original zip and files.
	devKey, err := capgodevice.PublicKey(string(pubPEM))
	if err != nil {
		t.Fatal(err)
	}
	zipPlain, err := capgodevice.DecryptFile(devKey, ans.SessionKey, zipCT)
	if err != nil {
		t.Fatal(err)
	}
	wantSum, err := capgodevice.DecryptChecksum(devKey, ans.Checksum)
	if err != nil || hexSHA(zipPlain) != wantSum || !bytes.Equal(zipPlain, plain) {
		t.Fatalf("go device: zip does not verify (%v)", err)
	}
	for i, m := range ans.Manifest {
		data, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("file-%d", i)))
		if data, err = capgodevice.DecryptFile(devKey, ans.SessionKey, data); err != nil {
			t.Fatalf("go device: %s: %v", m.Name, err)
		}
		if strings.HasSuffix(m.Name, ".br") {
			if data, err = brrr.Decompress(data); err != nil {
				t.Fatalf("go device: %s: %v", m.Name, err)
			}
		}
		if h, err := capgodevice.DecryptChecksum(devKey, m.Hash); err != nil || h != hexSHA(data) {
			t.Fatalf("go device: %s does not verify", m.Name)
		}
	}

	// A device holding another key (plugin > 8.40.7) is told so instead of
	// downloading a bundle it cannot open (Capgo update.ts key_id_mismatch).
	other := "MIIBCgKCAQEAotherkey"
	resp, err = http.Post("http://"+r.EdgeAddr+"/updates", "application/json", strings.NewReader(strings.Replace(body, keyID, other, 1)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	want2 := `{"error":"key_id_mismatch","message":"Device encryption key does not match bundle encryption key. The device may have a different public key than the one used to encrypt this bundle.","deviceKeyId":"` + other + `","bundleKeyId":"` + keyID + `","kind":"blocked"}`
	if resp.StatusCode != 200 || string(raw) != want2 {
		t.Fatalf("key mismatch: HTTP %d %s", resp.StatusCode, raw)
	}

	node := nodeOrSkip(t)
	script := filepath.Join(dir, "device.js")
	os.WriteFile(script, []byte(nodeDevice), 0o644)
	out, err := exec.Command(node, script, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var res struct {
		AESKeyBytes            int
		ZipSha, Checksum       string
		Files, FilesOK, Brotli int
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node output %s: %v", out, err)
	}
	want := sha256.Sum256(plain)
	if res.AESKeyBytes != 16 || res.ZipSha != hex.EncodeToString(want[:]) || res.Checksum != res.ZipSha {
		t.Fatalf("node: %+v, want zip sha %x", res, want)
	}
	if res.Files != len(ans.Manifest) || res.FilesOK != res.Files || res.Brotli == 0 {
		t.Fatalf("node manifest check: %+v", res)
	}

}
