// dockerfilecheck checks a Dockerfile the way `docker build --check` does, without a
// Docker engine or a registry: BuildKit's own Dockerfile frontend (moby/buildkit)
// parses it, resolves every stage and build argument, converts the target to LLB (the
// build graph BuildKit would run), and applies the frontend's lint rules. Base
// images are not fetched: their configuration is taken as empty.
//
// Prints the images it uses (base images and COPY --from images: a misspelled stage
// name there reads as an image) and the resulting image configuration.
//
// Usage: dockerfilecheck [-build-arg KEY=VALUE]... [-target STAGE] DOCKERFILE
// Exits 1 on a parse or conversion error or on any lint warning.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerui"
	digest "github.com/opencontainers/go-digest"
)

// offline answers every image with an empty linux/amd64 configuration, and notes
// which images the Dockerfile uses (FROM, COPY --from). BuildKit resolves the stages'
// base images concurrently (an errgroup), so the notes are taken under a lock.
type offline struct {
	mu     *sync.Mutex
	images map[string]bool
}

func (o offline) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	o.mu.Lock()
	o.images[ref] = true
	o.mu.Unlock()
	return ref, "", []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}`), nil
}

type buildArgs map[string]string

func (b buildArgs) String() string { return fmt.Sprint(map[string]string(b)) }
func (b buildArgs) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	b[k] = val
	return nil
}

func main() {
	args := buildArgs{}
	flag.Var(args, "build-arg", "build argument KEY=VALUE (repeatable)")
	target := flag.String("target", "", "stage to build (default: the last)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: dockerfilecheck [-build-arg KEY=VALUE]... [-target STAGE] DOCKERFILE")
		os.Exit(2)
	}
	path := flag.Arg(0)
	dt, err := os.ReadFile(path)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	var mu sync.Mutex // guards warnings and images: the frontend calls back from goroutines
	var warnings []string
	images := map[string]bool{}
	opt := dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{BuildArgs: args, Target: *target},
		MetaResolver: offline{mu: &mu, images: images},
		Warn: func(rule, _, _, msg string, location []parser.Range) {
			line := 0
			if len(location) > 0 {
				line = location[0].Start.Line
			}
			mu.Lock()
			defer mu.Unlock()
			warnings = append(warnings, fmt.Sprintf("%s:%d: %s: %s", path, line, rule, msg))
		},
	}

	// Every stage, as the lint of `docker build --check` does, then the target.
	all := opt
	all.AllStages = true
	if _, err := dockerfile2llb.Dockerfile2LLB(ctx, dt, all); err != nil {
		fail(err)
	}
	opt.Warn = nil
	res, err := dockerfile2llb.Dockerfile2LLB(ctx, dt, opt)
	if err != nil {
		fail(err)
	}
	def, err := res.State.Marshal(ctx)
	if err != nil {
		fail(err)
	}
	if len(warnings) > 0 {
		fail(fmt.Errorf("lint:\n%s", strings.Join(warnings, "\n")))
	}
	cfg := res.Image.Config
	var health []string
	if cfg.Healthcheck != nil {
		health = cfg.Healthcheck.Test
	}
	fmt.Printf("%s: ok (build args %v; %d LLB ops)\n  images %v\n  user %q, workdir %q, volumes %v, ports %v\n  entrypoint %v\n  healthcheck %v\n  env %v\n",
		path, map[string]string(args), len(def.Def), keys(images), cfg.User, cfg.WorkingDir, keys(cfg.Volumes),
		keys(cfg.ExposedPorts), cfg.Entrypoint, health, cfg.Env)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "dockerfilecheck: %v\n", err)
	os.Exit(1)
}
