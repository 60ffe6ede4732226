package validate

import (
	"bufio"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// Instruction is one Dockerfile instruction, continuation lines joined.
type Instruction struct {
	Line  int    // where it starts
	Cmd   string // upper case: FROM, RUN, …
	Flags []string
	Args  string // after the flags
}

// Stage is a build stage: its FROM and the instructions up to the next FROM.
type Stage struct {
	Image, Name, Platform string
	From                  Instruction
	Body                  []Instruction
}

// Dockerfile is a parsed Dockerfile.
type Dockerfile struct {
	Stages []Stage
}

// ParseDockerfile reads the instructions of a Dockerfile: comment lines
// skipped, lines ending in a backslash joined to the next, leading --flags
// split off. Only what the checks need; no variable expansion.
func ParseDockerfile(text string) (*Dockerfile, error) {
	var (
		ins     []Instruction
		cur     strings.Builder
		start   int
		lineNum int
	)
	flush := func() error {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return nil
		}
		cmd, rest, _ := strings.Cut(s, " ")
		in := Instruction{Line: start, Cmd: strings.ToUpper(cmd)}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			var flag string
			flag, rest, _ = strings.Cut(rest, " ")
			in.Flags = append(in.Flags, flag)
			rest = strings.TrimSpace(rest)
		}
		in.Args = rest
		if !regexp.MustCompile(`^[A-Z]+$`).MatchString(in.Cmd) {
			return fmt.Errorf("line %d: %q is not an instruction", start, cmd)
		}
		ins = append(ins, in)
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		lineNum++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // a comment (or a parser directive), also inside a continuation
		}
		if cur.Len() == 0 {
			if trimmed == "" {
				continue
			}
			start = lineNum
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	d := &Dockerfile{}
	for _, in := range ins {
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			st := Stage{From: in}
			if len(f) > 0 {
				st.Image = f[0]
			}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			for _, flag := range in.Flags {
				if v, ok := strings.CutPrefix(flag, "--platform="); ok {
					st.Platform = v
				}
			}
			d.Stages = append(d.Stages, st)
			continue
		}
		if len(d.Stages) == 0 {
			if in.Cmd == "ARG" {
				continue // ARG before the first FROM
			}
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.Line, in.Cmd)
		}
		last := &d.Stages[len(d.Stages)-1]
		last.Body = append(last.Body, in)
	}
	if len(d.Stages) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return d, nil
}

// find returns the stage's instructions of one kind.
func (s Stage) find(cmd string) []Instruction {
	var out []Instruction
	for _, in := range s.Body {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// imageRef splits an image reference into repository, tag and digest.
func imageRef(ref string) (repo, tag, digest string) {
	repo, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	return repo, tag, digest
}

// movingTags never name one image for long.
var movingTags = []string{"", "latest", "main", "master", "edge", "dev", "devel", "nightly", "stable"}

// pinned says why an image reference is not pinned to a version, or "".
func pinned(ref string) string {
	_, tag, digest := imageRef(ref)
	switch {
	case digest != "":
		if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(digest) {
			return fmt.Sprintf("%s: malformed digest", ref)
		}
		return ""
	case slices.Contains(movingTags, tag):
		return fmt.Sprintf("%s: no version tag (or :%s, which moves); pin a version tag or a digest", ref, tag)
	}
	return ""
}

// DockerfileFacts are what the manifests must agree with.
type DockerfileFacts struct {
	User    string   // USER of the final stage
	Expose  []string // EXPOSE of the final stage
	Volumes []string
	Env     map[string]string // ENV of the final stage
}

// Facts reads the final stage's USER, EXPOSE, VOLUME and ENV.
func (d *Dockerfile) Facts() DockerfileFacts {
	final := d.Stages[len(d.Stages)-1]
	f := DockerfileFacts{Env: map[string]string{}}
	for _, in := range final.Body {
		switch in.Cmd {
		case "USER":
			f.User = in.Args
		case "EXPOSE":
			for _, p := range strings.Fields(in.Args) {
				f.Expose = append(f.Expose, strings.TrimSuffix(p, "/tcp"))
			}
		case "VOLUME":
			var vs []string
			if json.Unmarshal([]byte(in.Args), &vs) != nil {
				vs = strings.Fields(in.Args)
			}
			f.Volumes = append(f.Volumes, vs...)
		case "ENV":
			for _, kv := range strings.Fields(in.Args) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					f.Env[k] = strings.Trim(v, `"`)
				}
			}
		}
	}
	return f
}

// DockerfileRule is one check of the Dockerfile.
type DockerfileRule struct {
	Name  string
	Check func(d *Dockerfile, goVersion string) []string
}

// The build command must carry these, in the RUN that runs go build.
var buildFlags = []struct{ re, why string }{
	{`(^|\s)CGO_ENABLED=0\s`, "CGO_ENABLED=0 (a static binary for a distroless/static image)"},
	{`\sgo build\s`, "go build"},
	{`\s-trimpath(\s|$)`, "-trimpath (no build paths in the binary)"},
	{`-ldflags[= ]+"([^"]* )?-s[ "]`, `-ldflags "-s …" (no symbol table)`},
	{`-ldflags[= ]+"([^"]* )?-w[ "]`, `-ldflags "-w …" (no DWARF)`},
	{`-ldflags[= ]+"([^"]* )?-X[= ]main\.version=\$(\{VERSION\}|VERSION)[ "]`, `-ldflags "-X main.version=${VERSION}" (the version stamped)`},
	{`\s\./cmd/reprovision-bot(\s|$)`, "./cmd/reprovision-bot"},
}

// DockerfileRules check deploy/Dockerfile.
var DockerfileRules = []DockerfileRule{
	{"build stage uses the Go of go.mod", func(d *Dockerfile, goVersion string) []string {
		repo, tag, _ := imageRef(d.Stages[0].Image)
		if len(d.Stages) < 2 {
			return []string{"not multi-stage: the final image must not carry the Go toolchain"}
		}
		if repo != "golang" && repo != "docker.io/library/golang" {
			return []string{fmt.Sprintf("first stage FROM %s: expected the golang image", d.Stages[0].Image)}
		}
		if tag != goVersion && !strings.HasPrefix(tag, goVersion+"-") {
			return []string{fmt.Sprintf("FROM %s: the tag must carry go.mod's Go version %s (golang:%s-bookworm)", d.Stages[0].Image, goVersion, goVersion)}
		}
		return nil
	}},
	{"base images pinned", func(d *Dockerfile, _ string) (p []string) {
		var names []string
		for _, st := range d.Stages {
			switch {
			case slices.Contains(names, st.Image), st.Image == "scratch":
			default:
				if why := pinned(st.Image); why != "" {
					p = append(p, fmt.Sprintf("line %d: FROM %s", st.From.Line, why))
				}
			}
			names = append(names, st.Name)
		}
		return p
	}},
	{"static, trimmed, stripped build with the version stamped", func(d *Dockerfile, _ string) (p []string) {
		var build *Instruction
		var stage Stage
		for _, st := range d.Stages {
			for i, in := range st.Body {
				if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
					build, stage = &st.Body[i], st
				}
			}
		}
		if build == nil {
			return []string{"no RUN … go build"}
		}
		for _, f := range buildFlags {
			if !regexp.MustCompile(f.re).MatchString(" " + build.Args) {
				p = append(p, fmt.Sprintf("line %d: the go build lacks %s", build.Line, f.why))
			}
		}
		declared := false
		for _, in := range stage.Body {
			if in.Line > build.Line {
				break
			}
			if in.Cmd == "ARG" && regexp.MustCompile(`^VERSION(=|$)`).MatchString(in.Args) {
				declared = true
			}
		}
		if !declared {
			p = append(p, fmt.Sprintf("line %d: no ARG VERSION in the build stage before the go build (an ARG before FROM is not visible there)", build.Line))
		}
		return p
	}},
	{"final image: distroless static or scratch, nonroot, CA certificates", func(d *Dockerfile, _ string) (p []string) {
		final := d.Stages[len(d.Stages)-1]
		repo, tag, _ := imageRef(final.Image)
		switch {
		case strings.HasPrefix(repo, "gcr.io/distroless/static"):
			if tag != "" && !strings.Contains(tag, "nonroot") {
				p = append(p, fmt.Sprintf("FROM %s: use the :nonroot variant", final.Image))
			}
		case final.Image == "scratch":
			ca := false
			for _, in := range final.find("COPY") {
				ca = ca || strings.Contains(in.Args, "ca-certificates")
			}
			if !ca {
				p = append(p, "FROM scratch without CA certificates: Slack, Entra and Graph are called over TLS")
			}
		default:
			p = append(p, fmt.Sprintf("final FROM %s: expected gcr.io/distroless/static…:nonroot or scratch", final.Image))
		}
		users := final.find("USER")
		if len(users) == 0 {
			return append(p, "the final stage sets no USER")
		}
		u := users[len(users)-1].Args
		if !regexp.MustCompile(`^[1-9][0-9]*:[1-9][0-9]*$`).MatchString(u) {
			p = append(p, fmt.Sprintf("USER %s: must be a numeric non-root uid:gid (65532:65532), so that runAsNonRoot can verify it", u))
		}
		return p
	}},
	{"entrypoint, port and store volume", func(d *Dockerfile, _ string) (p []string) {
		final := d.Stages[len(d.Stages)-1]
		eps := final.find("ENTRYPOINT")
		if len(eps) == 0 {
			return []string{"no ENTRYPOINT"}
		}
		var argv []string
		if err := json.Unmarshal([]byte(eps[len(eps)-1].Args), &argv); err != nil || len(argv) == 0 {
			p = append(p, "ENTRYPOINT must be in exec form ([\"/reprovision-bot\"]): in shell form SIGTERM reaches a shell, not the bot (and distroless has none)")
		} else {
			copied := false
			for _, in := range final.find("COPY") {
				f := strings.Fields(in.Args)
				copied = copied || (len(f) >= 2 && f[len(f)-1] == argv[0])
			}
			if !copied {
				p = append(p, fmt.Sprintf("ENTRYPOINT %s: no COPY puts a file there", argv[0]))
			}
		}
		f := d.Facts()
		if len(f.Expose) == 0 {
			p = append(p, "no EXPOSE (the HTTP listener: /healthz, /readyz, /metrics)")
		}
		if db := f.Env["REPROVISION_DB"]; db == "" {
			p = append(p, "no ENV REPROVISION_DB: the default (reprovision.db in the working directory) is not on the volume")
		} else if !slices.ContainsFunc(f.Volumes, func(v string) bool { return strings.HasPrefix(db, strings.TrimSuffix(v, "/")+"/") }) {
			p = append(p, fmt.Sprintf("ENV REPROVISION_DB=%s is not under a VOLUME (%v)", db, f.Volumes))
		}
		return p
	}},
}

// CheckDockerfile runs every rule of DockerfileRules.
func CheckDockerfile(d *Dockerfile, goVersion string) []string {
	var p []string
	for _, r := range DockerfileRules {
		for _, msg := range r.Check(d, goVersion) {
			p = append(p, r.Name+": "+msg)
		}
	}
	return p
}

// MustStayOut are paths, relative to the build context, that .dockerignore
// must keep out of it: the repository, local stores (and their WAL, shared
// memory and lock files), secrets, and the locally built binary.
var MustStayOut = []string{
	".git/config", ".git/objects/ab/cdef",
	"reprovision.db", "reprovision.db-wal", "reprovision.db-shm", "reprovision.db.lock", "reprovision.db-journal",
	"cmd/reprovision-bot/reprovision.db", "cmd/reprovision-bot/x.db-wal",
	".env", "deploy/secret.yaml",
	"reprovision-bot",
}

// CheckDockerignore checks the .dockerignore patterns, with the matcher
// Docker and BuildKit use: the paths of MustStayOut are excluded, and
// every path of needed (go.mod, go.sum, the bot's Go files) is sent.
func CheckDockerignore(dockerignore string, needed []string) []string {
	patterns, err := ignorefile.ReadAll(strings.NewReader(dockerignore))
	if err != nil {
		return []string{err.Error()}
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return []string{err.Error()}
	}
	var p []string
	for _, path := range MustStayOut {
		if ok, err := pm.MatchesOrParentMatches(path); err != nil || !ok {
			p = append(p, fmt.Sprintf("%s is sent to the build context; exclude it", path))
		}
	}
	for _, path := range needed {
		if ok, err := pm.MatchesOrParentMatches(path); err != nil || ok {
			p = append(p, fmt.Sprintf("%s is excluded, but the build needs it", path))
		}
	}
	return p
}
