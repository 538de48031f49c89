package main

import "testing"

func TestGreet(t *testing.T) {
	out, err := greet(Input{Name: " Ada "})
	if err != nil || out.Message != "Hello, Ada!" {
		t.Fatalf("got %v %v", out, err)
	}
	if _, err := greet(Input{Name: " "}); err == nil {
		t.Fatal("a blank name was accepted")
	}
}
