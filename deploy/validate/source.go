package validate

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// EnvVar is one variable of the bot's environment contract: a field of a
// struct in the bot's main package tagged `envconfig:"NAME"`.
type EnvVar struct {
	Name     string
	Required bool   // required:"true"
	Default  string // default:"…"
	Where    string // file:line
}

// Source is what the checks need to know of the bot's main package.
type Source struct {
	Env map[string]EnvVar
	// VersionVar says whether the package has a variable that
	// -ldflags "-X main.version=…" can set: "" if it has, else why not.
	VersionVar string
}

// ReadSource parses the non-test Go files of the bot's main package (dir is
// cmd/reprovision-bot) with go/parser: the envconfig tags of every struct,
// and the package-level version variable.
func ReadSource(dir string) (Source, error) {
	s := Source{Env: map[string]EnvVar{}, VersionVar: "no package-level `var version string` in " + dir + ": -X main.version=… would set nothing"}
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return s, err
	}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return s, err
		}
		f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
		if err != nil {
			return s, fmt.Errorf("parsing the bot's sources: %w", err)
		}
		if f.Name.Name != "main" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			st, ok := n.(*ast.StructType)
			if !ok {
				return true
			}
			for _, field := range st.Fields.List {
				if field.Tag == nil {
					continue
				}
				raw, err := strconv.Unquote(field.Tag.Value)
				if err != nil {
					continue
				}
				tag := reflect.StructTag(raw)
				name, ok := tag.Lookup("envconfig")
				if !ok || name == "" {
					continue
				}
				s.Env[name] = EnvVar{Name: name, Required: tag.Get("required") == "true", Default: tag.Get("default"),
					Where: fmt.Sprintf("%s:%d", filepath.Base(path), fset.Position(field.Pos()).Line)}
			}
			return true
		})
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if id.Name != "version" {
						continue
					}
					s.VersionVar = stampable(vs, i, fset.Position(id.Pos()).String())
				}
			}
		}
	}
	return s, nil
}

// stampable tells whether the linker's -X can set the variable: it must be a
// string variable, uninitialized or initialized to a string literal.
func stampable(vs *ast.ValueSpec, i int, where string) string {
	if vs.Type != nil {
		if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "string" {
			return where + ": version is not a string variable: -X main.version=… cannot set it"
		}
	}
	if len(vs.Values) == 0 {
		if vs.Type == nil {
			return where + ": version has no type"
		}
		return ""
	}
	if i >= len(vs.Values) {
		return where + ": version is initialized by a multi-value expression: -X cannot set it"
	}
	if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
		return ""
	}
	return where + ": version is initialized by an expression that is not a string literal: -X main.version=… would be ignored"
}

// GoVersion reads the go directive of a go.mod file.
func GoVersion(gomod []byte) (string, error) {
	m := regexp.MustCompile(`(?m)^go\s+(\d+\.\d+(?:\.\d+)?)\s*$`).FindSubmatch(gomod)
	if m == nil {
		return "", fmt.Errorf("go.mod has no go directive")
	}
	return string(m[1]), nil
}
