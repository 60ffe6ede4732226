package validate

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Paths, relative to the repository root.
const (
	DockerfilePath   = "deploy/Dockerfile"
	DockerignorePath = ".dockerignore"
	BotPackage       = "cmd/reprovision-bot"
)

// notManifests are YAML files in deploy/ that are not Kubernetes manifests:
// the Slack app manifest, and the filled-in copy of the example Secret
// (git-ignored; it holds real tokens).
var notManifests = []string{"slack-app-manifest.yaml", "secret.yaml"}

// ManifestFiles lists the Kubernetes manifests: every deploy/*.yaml but
// notManifests.
func ManifestFiles(root string) ([]string, error) {
	all, err := filepath.Glob(filepath.Join(root, "deploy", "*.yaml"))
	if err != nil {
		return nil, err
	}
	var files []string
	for _, f := range all {
		if !slices.Contains(notManifests, filepath.Base(f)) {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no manifests in %s", filepath.Join(root, "deploy"))
	}
	return files, nil
}

// Load reads and decodes everything under root (the repository root) that
// the rules check. Decoding errors are returned joined, with the bundle of
// whatever did decode.
func Load(root string) (*Bundle, error) {
	b := &Bundle{}
	var errs []error
	files, err := ManifestFiles(root)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objs, err := Decode(filepath.Base(f), data)
		errs = append(errs, err)
		b.Objects = append(b.Objects, objs...)
	}
	if b.Source, err = ReadSource(filepath.Join(root, BotPackage)); err != nil {
		return nil, err
	}
	text, err := os.ReadFile(filepath.Join(root, DockerfilePath))
	if err != nil {
		return nil, err
	}
	if b.Docker, err = ParseDockerfile(string(text)); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", DockerfilePath, err))
	}
	return b, errors.Join(errs...)
}

// BuildInputs lists what `go build ./cmd/reprovision-bot` in the image may
// need, relative to root: go.mod, go.sum and every non-test Go file of the
// bot's module (not those of nested modules such as deploy/validate, nor
// testdata).
func BuildInputs(root string) ([]string, error) {
	inputs := []string{"go.mod", "go.sum"}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "." {
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go") {
			inputs = append(inputs, rel)
		}
		return nil
	})
	return inputs, err
}
