// composecheck validates Compose files the way `docker compose config` does, without
// a Docker engine: it loads them with compose-go, the loader of the docker compose
// CLI, which checks them against the Compose specification's JSON schema,
// interpolates variables, and runs the consistency checks (every named volume,
// network, config and secret declared, depends_on naming real services, no cycles).
//
// On top of the loader, it checks that every bind-mounted host path and every build
// context (with its Dockerfile) exists: docker compose would silently create a missing
// bind source as an empty directory.
//
// Usage: composecheck [-profile NAME]... [-q] FILE...
// Every profile is enabled unless -profile is given. Prints the resolved model as
// YAML (like `docker compose config`) unless -q; exits 1 with the first error.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

type profiles []string

func (p *profiles) String() string     { return strings.Join(*p, ",") }
func (p *profiles) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	var selected profiles
	flag.Var(&selected, "profile", "enable this profile (repeatable; default: every profile)")
	quiet := flag.Bool("q", false, "print nothing on success")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: composecheck [-profile NAME]... [-q] FILE...")
		os.Exit(2)
	}
	if len(selected) == 0 {
		selected = profiles{"*"}
	}
	files := flag.Args()
	dir, err := filepath.Abs(filepath.Dir(files[0]))
	if err != nil {
		fail(err)
	}
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(dir),
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithProfiles(selected),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		fail(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	if len(project.Services) == 0 {
		fail(fmt.Errorf("no service enabled (profiles %v)", selected))
	}
	for _, name := range project.ServiceNames() {
		service := project.Services[name]
		for _, volume := range service.Volumes {
			if volume.Type == "bind" {
				mustExist(name, "bind mount source", volume.Source)
			}
		}
		if service.Build != nil {
			mustExist(name, "build context", service.Build.Context)
			dockerfile := service.Build.Dockerfile
			if dockerfile == "" {
				dockerfile = "Dockerfile"
			}
			if !filepath.IsAbs(dockerfile) {
				dockerfile = filepath.Join(service.Build.Context, dockerfile)
			}
			mustExist(name, "Dockerfile", dockerfile)
		}
	}
	if *quiet {
		return
	}
	out, err := project.MarshalYAML()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(out)
}

func mustExist(service, what, path string) {
	if _, err := os.Stat(path); err != nil {
		fail(fmt.Errorf("service %q: %s %s: %w", service, what, path, err))
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "composecheck: %v\n", err)
	os.Exit(1)
}
