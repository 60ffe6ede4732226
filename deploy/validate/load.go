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

// notManifests are YAML files in deploy/ that are not Kubernetes manifests.
// The filled-in copy of an example (secret.yaml beside secret.example.yaml:
// git-ignored, it holds real tokens) is never read either.
var notManifests = []string{"slack-app-manifest.yaml"}

// ManifestFiles lists the Kubernetes manifests in dir (relative to root):
// every *.yaml there but notManifests and the filled-in copies of examples.
func ManifestFiles(root, dir string) ([]string, error) {
	all, err := filepath.Glob(filepath.Join(root, dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var files []string
	for _, f := range all {
		base := filepath.Base(f)
		if slices.Contains(notManifests, base) || slices.Contains(all, filledCopyOf(f)) {
			continue
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no manifests in %s", filepath.Join(root, dir))
	}
	return files, nil
}

// filledCopyOf is the example whose filled-in copy f would be (x.yaml for
// x.example.yaml), or "" when f is an example itself.
func filledCopyOf(f string) string {
	if strings.HasSuffix(f, ".example.yaml") {
		return ""
	}
	return strings.TrimSuffix(f, ".yaml") + ".example.yaml"
}

// AllManifestFiles lists the manifests of deploy/ and of each directory
// under it (deploy/*.yaml, deploy/*/*.yaml), whether a variant reads them or
// not.
func AllManifestFiles(root string) ([]string, error) {
	dirs := []string{"deploy"}
	sub, err := filepath.Glob(filepath.Join(root, "deploy", "*", "*.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range sub {
		if dir, _ := filepath.Rel(root, filepath.Dir(f)); !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	var files []string
	for _, dir := range dirs {
		fs, err := ManifestFiles(root, dir)
		if err != nil {
			return nil, err
		}
		files = append(files, fs...)
	}
	return files, nil
}

// sourceName names a manifest in messages: its path under deploy/
// (kubernetes.yaml, postgres/kubernetes.yaml).
func sourceName(root, f string) string {
	rel, err := filepath.Rel(filepath.Join(root, "deploy"), f)
	if err != nil {
		return filepath.Base(f)
	}
	return filepath.ToSlash(rel)
}

// Files lists the manifests of the variant: every manifest of its
// directory, then the shared ones.
func (v *Variant) Files(root string) ([]string, error) {
	files, err := ManifestFiles(root, v.Dir)
	if err != nil {
		return nil, err
	}
	for _, s := range v.Shared {
		files = append(files, filepath.Join(root, s))
	}
	return files, nil
}

// Load reads and decodes everything under root (the repository root) that
// the rules check for one variant. Decoding errors are returned joined, with
// the bundle of whatever did decode.
func Load(root string, v *Variant) (*Bundle, error) {
	b := &Bundle{Variant: v}
	var errs []error
	files, err := v.Files(root)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objs, err := Decode(sourceName(root, f), data)
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

// LoadAll loads every variant of Variants, in order.
func LoadAll(root string) ([]*Bundle, error) {
	var (
		bundles []*Bundle
		errs    []error
	)
	for _, v := range Variants {
		b, err := Load(root, v)
		if b == nil {
			return nil, fmt.Errorf("%s: %w", v.Name, err)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.Name, err))
		}
		bundles = append(bundles, b)
	}
	return bundles, errors.Join(errs...)
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
