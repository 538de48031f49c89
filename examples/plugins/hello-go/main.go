// Say hello: a Warden plugin in Go, built with the Go SDK.
package main

import (
	"strings"

	"warden.dev/sdk"
)

type Input struct {
	Name string `json:"name"`
}

type Output struct {
	Message string `json:"message"`
}

func greet(in Input) (Output, error) {
	name := strings.TrimSpace(in.Name)
	if name == "" {
		return Output{}, plugin.Errorf("ValidationError", "name must not be blank")
	}
	return Output{Message: "Hello, " + name + "!"}, nil
}

func main() {
	plugin.Run(greet)
}
