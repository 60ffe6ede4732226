//go:build race

package main

// raceBuild: the tests run with -race, so binary() builds the bot with
// -race too and reuses the packages the test build compiled.
const raceBuild = true
