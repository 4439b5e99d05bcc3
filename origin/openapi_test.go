package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/updraft-cdn/updraft/origin/api"
	"github.com/updraft-cdn/updraft/origin/store"
)

const openAPITestApp = "com.example.app"

// loadOpenAPI parses the embedded document and validates it as OpenAPI 3
// (structure, $refs, and every example against its schema).
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIDoc)
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not valid OpenAPI 3: %v", err)
	}
	return doc
}

type documentedOp struct {
	method, path string // path as in the document: /api/v1/apps/{app}
	op           *openapi3.Operation
}

func documentedOps(doc *openapi3.T) []documentedOp {
	var out []documentedOp
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			out = append(out, documentedOp{method, path, op})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].path < out[j].path || out[i].path == out[j].path && out[i].method < out[j].method
	})
	return out
}

// concrete fills a documented path's parameters.
func concrete(path string) string {
	vals := map[string]string{"app": openAPITestApp, "name": "production", "version": "1.0.0"}
	return regexp.MustCompile(`\{([a-z]+)\}`).ReplaceAllStringFunc(path, func(m string) string {
		if v, ok := vals[m[1:len(m)-1]]; ok {
			return v
		}
		return "x"
	})
}

// openAPIOrigin starts an origin with the app the examples name.
func openAPIOrigin(t *testing.T) (*testOrigin, string) {
	t.Helper()
	o := startOrigin(t)
	if _, err := o.client.CreateApp(context.Background(), openAPITestApp, "Example"); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(o.dir, "api-key"))
	if err != nil {
		t.Fatal(err)
	}
	return o, strings.TrimSpace(string(key))
}

func send(t *testing.T, o *testOrigin, key, method, path, contentType string, body []byte) (int, apiError, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, o.http.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var ae apiError
	json.Unmarshal(raw, &ae)
	return resp.StatusCode, ae, raw
}

// TestOpenAPIRoutes: every route Handler registers under /api/v1 is
// documented, and every documented operation exists on a real origin (the
// mux does not answer it 404 "no such endpoint" or 405) with the security
// the document gives it.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	o, key := openAPIOrigin(t)

	var registered []string
	for _, p := range o.srv.routes {
		if method, path, ok := strings.Cut(p, " "); ok && strings.HasPrefix(path, "/api/v1/") {
			registered = append(registered, method+" "+path)
		}
	}
	if len(registered) < 20 {
		t.Fatalf("only %d /api/v1 routes recorded by Handler: %v", len(registered), registered)
	}
	var documented []string
	for _, d := range documentedOps(doc) {
		documented = append(documented, d.method+" "+d.path)
	}
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is registered by Handler but not documented in origin/openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			t.Errorf("%s is documented in origin/openapi.json but Handler does not register it", d)
		}
	}

	for _, d := range documentedOps(doc) {
		path := concrete(d.path)
		// No body and no query: the request reaches the handler, which
		// refuses it or does something harmless (GC, listing); nothing is
		// deleted (DELETE of the app needs ?confirm).
		status, ae, _ := send(t, o, key, d.method, path, "", nil)
		if status == http.StatusMethodNotAllowed || status == http.StatusNotFound && strings.HasPrefix(ae.Message, "no such endpoint") {
			t.Errorf("%s %s (documented %s): the mux answers %d %s", d.method, path, d.path, status, ae.Message)
		}
		public := d.op.Security != nil && len(*d.op.Security) == 0
		status, ae, _ = send(t, o, "", d.method, path, "", nil)
		switch {
		case public && status != http.StatusOK:
			t.Errorf("%s %s is documented without security but answers %d %s without a key", d.method, path, status, ae.Error())
		case !public && (status != http.StatusUnauthorized || ae.Code != "unauthorized"):
			t.Errorf("%s %s is documented behind the API key but answers %d %s without one", d.method, path, status, ae.Error())
		}
		if _, ok := d.op.Responses.Map()["401"]; !public && !ok {
			t.Errorf("%s %s: no 401 response documented", d.method, d.path)
		}
	}
}

// TestOpenAPIServed: the origin serves the embedded document, without the
// API key.
func TestOpenAPIServed(t *testing.T) {
	o := startOrigin(t)
	resp, err := http.Get(o.http.URL + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(body, openAPIDoc) {
		t.Fatalf("GET /api/v1/openapi.json: %d %s, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
}

// requestTypes are the handlers' named request types, by operationId: an
// example must decode into its type with unknown fields refused. Handlers
// that decode into an anonymous struct are covered by posting the example
// to a real origin (below), which refuses unknown fields too.
var requestTypes = map[string]func() any{
	"patchApp":      func() any { return new(AppOptions) },
	"rebuildBundle": func() any { return new(RebuildRequest) },
	"createChannel": func() any { return new(channelBody) },
	"putChannel":    func() any { return new(store.ChannelPatch) },
	"rollout":       func() any { return new(RolloutRequest) },
	"putGuard":      func() any { return new(store.Guard) },
	"resolve":       func() any { return new(DeviceRequest) },
	"postRotateKey": func() any { return new(RotateKeyRequest) },
	"createKey":     func() any { return new(CreateKeyRequest) },
	"addWebhook":    func() any { return new(api.WebhookRequest) },
	"addCohort":     func() any { return new(AddCohortRequest) },
}

func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// TestOpenAPIExamples: every operation with a request body has an example;
// JSON examples decode into the handler's request type and a real origin
// does not refuse them as invalid_json; the encrypted upload's meta example
// decodes into EncryptedMeta.
func TestOpenAPIExamples(t *testing.T) {
	doc := loadOpenAPI(t)
	for _, d := range documentedOps(doc) {
		if d.op.RequestBody == nil {
			continue
		}
		content := d.op.RequestBody.Value.Content
		examples := 0
		for mt, media := range content {
			if media.Example == nil {
				continue
			}
			examples++
			raw, err := json.Marshal(media.Example)
			if err != nil {
				t.Fatal(err)
			}
			switch mt {
			case "multipart/form-data":
				var parts map[string]json.RawMessage
				if err := json.Unmarshal(raw, &parts); err != nil {
					t.Fatalf("%s: %v", d.op.OperationID, err)
				}
				if err := decodeStrict(parts["meta"], new(EncryptedMeta)); err != nil {
					t.Errorf("%s: multipart example's meta does not decode into EncryptedMeta: %v", d.op.OperationID, err)
				}
			case "application/json":
				if mk, ok := requestTypes[d.op.OperationID]; ok {
					if err := decodeStrict(raw, mk()); err != nil {
						t.Errorf("%s: example does not decode into the handler's request type: %v", d.op.OperationID, err)
					}
				}
				// A fresh origin per example: examples change state.
				o, key := openAPIOrigin(t)
				status, ae, _ := send(t, o, key, d.method, concrete(d.path), "application/json", raw)
				if ae.Code == "invalid_json" || status == http.StatusNotFound && strings.HasPrefix(ae.Message, "no such endpoint") {
					t.Errorf("%s %s: the origin refuses the documented example %s: %d %s", d.method, d.path, raw, status, ae.Error())
				}
			default:
				t.Errorf("%s: example for %s: the test does not know how to check it", d.op.OperationID, mt)
			}
		}
		if examples == 0 {
			t.Errorf("%s %s has a request body but no example", d.method, d.path)
		}
	}
}
