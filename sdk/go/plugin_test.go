package plugin

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

type input struct {
	Name  string `json:"name"`
	Times int    `json:"times"`
}

type output struct {
	Message string `json:"message"`
}

func greet(in input) (output, error) {
	if in.Name == "" {
		return output{}, Errorf("ValidationError", "name is required")
	}
	return output{Message: strings.Repeat("Hello, "+in.Name+"! ", max(in.Times, 1))}, nil
}

func max(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func run(t *testing.T, handle func(input) (output, error), event string) (int, map[string]any) {
	t.Helper()
	var out strings.Builder
	code := RunIO(handle, strings.NewReader(event), &out)
	var doc map[string]any
	if err := json.Unmarshal([]byte(out.String()), &doc); err != nil {
		t.Fatalf("output is not JSON: %q", out.String())
	}
	return code, doc
}

func TestSuccessWritesTheResult(t *testing.T) {
	code, doc := run(t, greet, `{"name": "Ada", "times": 2}`)
	if code != 0 || doc["message"] != "Hello, Ada! Hello, Ada! " {
		t.Fatalf("got %d %v", code, doc)
	}
}

func TestErrorsAreStructured(t *testing.T) {
	cases := []struct {
		handle  func(input) (output, error)
		event   string
		typ     string
		message string
	}{
		{greet, `{}`, "ValidationError", "name is required"},
		{greet, `{"name": 3}`, "InvalidEvent", "does not fit"},
		{greet, `not json`, "InvalidEvent", "does not fit"},
		{func(input) (output, error) { return output{}, errors.New("boom") }, `{}`, "HandlerError", "boom"},
		{func(input) (output, error) { panic("oh no") }, `{}`, "Panic", "oh no"},
	}
	for _, c := range cases {
		code, doc := run(t, c.handle, c.event)
		e, _ := doc["error"].(map[string]any)
		if code != 1 || e["type"] != c.typ || !strings.Contains(e["message"].(string), c.message) {
			t.Errorf("%s: got %d %v", c.event, code, doc)
		}
	}
}

func TestResultsMustBeJSON(t *testing.T) {
	var out strings.Builder
	code := RunIO(func(struct{}) (any, error) { return func() {}, nil }, strings.NewReader(`{}`), &out)
	if code != 1 || !strings.Contains(out.String(), "ResultNotSerializable") {
		t.Fatalf("got %d %q", code, out.String())
	}
}
