package bench

import (
	"strings"
	"testing"
)

// readExpoParts names parts by their Content-Disposition's name parameter
// (inline dispositions, as the edge writes them, or form-data), takes a
// JSON answer as the manifest (protocol 0), and refuses other answers.
func TestReadExpoParts(t *testing.T) {
	body := "--b1\r\ncontent-disposition: inline; name=\"manifest\"\r\ncontent-type: application/json\r\n\r\n{\"id\":\"x\"}\r\n" +
		"--b1\r\nContent-Disposition: form-data; name=extensions\r\n\r\n{}\r\n" +
		"--b1\r\ncontent-type: text/plain\r\n\r\nunnamed\r\n--b1--\r\n"
	parts, err := readExpoParts("multipart/mixed; boundary=b1", strings.NewReader(body))
	if err != nil || len(parts) != 2 || string(parts["manifest"]) != `{"id":"x"}` || string(parts["extensions"]) != "{}" {
		t.Fatalf("parts %q, %v", parts, err)
	}
	parts, err = readExpoParts("application/expo+json; charset=utf-8", strings.NewReader(`{"id":"y"}`))
	if err != nil || string(parts["manifest"]) != `{"id":"y"}` {
		t.Fatalf("JSON answer: %q, %v", parts, err)
	}
	for _, ct := range []string{"text/html", "multipart/mixed", ""} {
		if _, err := readExpoParts(ct, strings.NewReader("x")); err == nil {
			t.Errorf("content type %q accepted", ct)
		}
	}
	// A cut answer (no closing delimiter) is an error, not fewer parts.
	if _, err := readExpoParts("multipart/mixed; boundary=b1", strings.NewReader(body[:60])); err == nil {
		t.Error("truncated multipart accepted")
	}
}

// The embedded update's id is a UUID, fixed for an app and runtime.
func TestExpoEmbeddedID(t *testing.T) {
	a, b := expoEmbeddedID("com.example.rn", "1.0.0"), expoEmbeddedID("com.example.rn", "2.0.0")
	if len(a) != 36 || a[14] != '4' || a == b || a != expoEmbeddedID("com.example.rn", "1.0.0") {
		t.Fatalf("%s %s", a, b)
	}
}
