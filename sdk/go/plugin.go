// Package plugin runs a typed handler as a Warden native plugin: the event
// arrives as JSON on stdin, the result leaves as JSON on stdout, and an
// error leaves as {"error": {"type": ..., "message": ...}} with exit code 1,
// which the platform reports with that type and message.
//
//	func main() {
//		plugin.Run(func(in Input) (Output, error) {
//			if in.Name == "" {
//				return Output{}, plugin.Errorf("ValidationError", "name is required")
//			}
//			return Output{Message: "Hello, " + in.Name + "!"}, nil
//		})
//	}
//
// Standard library only. `warden plugin pack` vendors this module into a
// package whose go.mod requires warden.dev/sdk.
package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// Version of this SDK.
const Version = "0.1.0"

// Error is an error with a type of the plugin's choosing.
type Error struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// Errorf makes an Error of type typ.
func Errorf(typ, format string, args ...any) *Error {
	return &Error{Type: typ, Message: fmt.Sprintf(format, args...)}
}

// MaxEventBytes is the largest event Run reads.
const MaxEventBytes = 64 << 20

// Run reads the event from stdin, calls handle, writes the result to stdout
// and exits: 0 on success, 1 on error.
func Run[In any, Out any](handle func(In) (Out, error)) {
	os.Exit(RunIO(handle, os.Stdin, os.Stdout))
}

// RunIO is Run on any reader and writer; it returns the exit code (for tests).
func RunIO[In any, Out any](handle func(In) (Out, error), r io.Reader, w io.Writer) int {
	data, err := io.ReadAll(io.LimitReader(r, MaxEventBytes+1))
	if err != nil {
		return fail(w, "ReadError", "reading the event: "+err.Error())
	}
	if len(data) > MaxEventBytes {
		return fail(w, "InvalidEvent", fmt.Sprintf("the event is over %d bytes", MaxEventBytes))
	}
	var in In
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&in); err != nil {
		return fail(w, "InvalidEvent", "the event does not fit the handler's input type: "+err.Error())
	}
	out, err := call(handle, in)
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			return fail(w, pe.Type, pe.Message)
		}
		return fail(w, "HandlerError", err.Error())
	}
	enc, err := json.Marshal(out)
	if err != nil {
		return fail(w, "ResultNotSerializable", err.Error())
	}
	enc = append(enc, '\n')
	if _, err := w.Write(enc); err != nil {
		return 1
	}
	return 0
}

// call runs handle, turning a panic into an error.
func call[In any, Out any](handle func(In) (Out, error), in In) (out Out, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &Error{Type: "Panic", Message: fmt.Sprint(p)}
		}
	}()
	return handle(in)
}

func fail(w io.Writer, typ, message string) int {
	doc, _ := json.Marshal(map[string]*Error{"error": {Type: typ, Message: message}})
	w.Write(append(doc, '\n'))
	return 1
}
