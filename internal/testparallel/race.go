//go:build race

package testparallel

// RaceDetector is true in a binary built with -race.
const RaceDetector = true
