package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDecodeJSON feeds arbitrary bodies to the JSON decoder every API
// handler uses: it must answer a problem or a value, never panic, and
// never accept a body with unknown fields or trailing data.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"email":"a@b.c","password":"x","name":"n"}`,
		`{"email":`, `[]`, `null`, `{"unknown":1}`, `{"email":"a"} {"email":"b"}`,
		`{"items":[{"drug":"x","quantity":1e309}]}`, "\xff\xfe", `{"email":"\u0000"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var v struct {
			Email    string `json:"email"`
			Password string `json:"password"`
			Name     string `json:"name"`
			Items    []struct {
				Drug     string  `json:"drug"`
				Quantity float64 `json:"quantity"`
			} `json:"items"`
		}
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		err := decodeJSON(httptest.NewRecorder(), r, &v)
		if err != nil && StatusOf(err) != http.StatusBadRequest {
			t.Fatalf("decode error with status %d: %v", StatusOf(err), err)
		}
	})
}
