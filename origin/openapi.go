package origin

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the OpenAPI 3 document of the operator API (/api/v1),
// served at GET /api/v1/openapi.json without the API key: it describes the
// API and exposes no data. openapi_test.go checks it against Handler's
// routes and the handlers' request types.
//
//go:embed openapi.json
var openAPIDoc []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(openAPIDoc)
}
