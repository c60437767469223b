// Package lifecycle is Gavel's small stand-in for Cloud Foundry's buildpack
// lifecycle (which cannot be fetched here), built as one static binary,
// cmd/gavel-lifecycle, with three programs:
//
//   - builder turns app bits into a droplet: it detects a start command
//     (the "web:" line of a Procfile, else "sh start.sh" when start.sh
//     exists; otherwise it exits 222, Diego's detect failure), writes the
//     droplet tarball (app/ holding the bits, staging_info.json holding the
//     start command), the staging result (the task's result file, Diego's
//     shape) and a build artifacts cache tarball. It takes Diego's builder
//     flags and ignores the buildpack ones, so the stager's recipe is the
//     same for a real buildpack lifecycle.
//   - launcher runs a droplet: in <app dir> it executes the start command
//     (its argument, else staging_info.json's) with /bin/sh -c.
//   - healthcheck checks a port (TCP connect, or HTTP GET with -uri) until
//     it answers or -timeout passes.
//
// Bundle writes the lifecycle tarball the file server serves: the binary as
// gavel-lifecycle plus builder, launcher and healthcheck as symlinks to it;
// the binary dispatches on the name it was run as. All paths are taken
// relative to the working directory when not absolute, so the programs stay
// inside a container's directory on the process backend (no chroot).
package lifecycle

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	bm "github.com/gavelhq/gavel/cc-bridge/bridgemessages"
)

// Exit statuses of the builder (Diego's buildpack lifecycle's).
const (
	ExitDetectFailed  = 222
	ExitCompileFailed = 223
	ExitReleaseFailed = 224
)

// Names of the programs.
const (
	Builder     = "builder"
	Launcher    = "launcher"
	Healthcheck = "healthcheck"
	Binary      = "gavel-lifecycle"
	// DetectedBuildpack names what the builder detected.
	DetectedBuildpack = "gavel-procfile"
	// StagingInfoFile is the droplet's metadata file.
	StagingInfoFile = "staging_info.json"
)

// ExitError is an error with the exit status the program should end with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// StagingInfo is the droplet's staging_info.json.
type StagingInfo struct {
	DetectedBuildpack string `json:"detected_buildpack"`
	StartCommand      string `json:"start_command"`
}

// Build runs the builder with Diego's builder arguments.
func Build(args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet(Builder, flag.ContinueOnError)
	buildDir := fl.String("buildDir", "/tmp/app", "directory holding the app bits")
	outputDroplet := fl.String("outputDroplet", "/tmp/droplet", "where to write the droplet tarball")
	outputMetadata := fl.String("outputMetadata", "/tmp/result.json", "where to write the staging result")
	outputCache := fl.String("outputBuildArtifactsCache", "/tmp/output-cache", "where to write the build artifacts cache tarball")
	cacheDir := fl.String("buildArtifactsCacheDir", "/tmp/cache", "the previous build artifacts cache")
	fl.String("buildpackOrder", "", "ignored (no buildpacks)")
	fl.String("buildpacksDir", "", "ignored (no buildpacks)")
	fl.Bool("skipDetect", false, "ignored (no buildpacks)")
	fl.Bool("skipCertVerify", false, "ignored")
	if err := fl.Parse(args); err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	cmd, err := Detect(*buildDir)
	if err != nil {
		return &ExitError{Code: ExitDetectFailed, Err: err}
	}
	fmt.Fprintf(stdout, "-----> Detected start command: %s\n", cmd)
	info, _ := json.Marshal(StagingInfo{DetectedBuildpack: DetectedBuildpack, StartCommand: cmd})
	if err := writeTarGz(*outputDroplet, func(tw *tar.Writer) error {
		if err := addDir(tw, *buildDir, "app"); err != nil {
			return err
		}
		return addFile(tw, StagingInfoFile, info, 0o644)
	}); err != nil {
		return &ExitError{Code: ExitCompileFailed, Err: fmt.Errorf("writing the droplet: %w", err)}
	}
	if err := writeTarGz(*outputCache, func(tw *tar.Writer) error {
		if st, err := os.Stat(*cacheDir); err == nil && st.IsDir() {
			return addDir(tw, *cacheDir, ".")
		}
		return nil
	}); err != nil {
		return &ExitError{Code: ExitCompileFailed, Err: fmt.Errorf("writing the build artifacts cache: %w", err)}
	}
	result, _ := json.Marshal(bm.StagingResult{
		LifecycleType:     bm.LifecycleBuildpack,
		LifecycleMetadata: map[string]string{"detected_buildpack": DetectedBuildpack, "buildpack_key": ""},
		ProcessTypes:      map[string]string{"web": cmd},
	})
	if err := writeFile(*outputMetadata, result); err != nil {
		return &ExitError{Code: ExitReleaseFailed, Err: fmt.Errorf("writing the staging result: %w", err)}
	}
	fmt.Fprintln(stdout, "-----> Droplet written")
	return nil
}

// Detect finds the start command of the app in dir.
func Detect(dir string) (string, error) {
	if f, err := os.Open(filepath.Join(dir, "Procfile")); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			name, cmd, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(name) == "web" && strings.TrimSpace(cmd) != "" {
				return strings.TrimSpace(cmd), nil
			}
		}
		return "", errors.New("Procfile has no web: process")
	}
	if st, err := os.Stat(filepath.Join(dir, "start.sh")); err == nil && st.Mode().IsRegular() {
		return "sh start.sh", nil
	}
	return "", errors.New("no start command: add a Procfile with a web: line, or a start.sh")
}

// Launch runs `launcher <app dir> [<start command> [<execution metadata>]]`:
// it replaces itself with /bin/sh -c <start command> in the app dir.
func Launch(args []string) error {
	if len(args) < 1 {
		return &ExitError{Code: 2, Err: errors.New("usage: launcher <app dir> [<start command> [<execution metadata>]]")}
	}
	dir := args[0]
	cmd := ""
	if len(args) > 1 {
		cmd = args[1]
	}
	if cmd == "" {
		data, err := os.ReadFile(filepath.Join(dir, "..", StagingInfoFile))
		if err != nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("no start command given and none staged: %w", err)}
		}
		var info StagingInfo
		if err := json.Unmarshal(data, &info); err != nil || info.StartCommand == "" {
			return &ExitError{Code: 2, Err: fmt.Errorf("%s: no start_command", StagingInfoFile)}
		}
		cmd = info.StartCommand
	}
	if err := os.Chdir(dir); err != nil {
		return &ExitError{Code: 2, Err: fmt.Errorf("app dir: %w", err)}
	}
	sh := "/bin/sh"
	if err := syscall.Exec(sh, []string{"sh", "-c", cmd}, os.Environ()); err != nil {
		return &ExitError{Code: 2, Err: fmt.Errorf("exec %s: %w", sh, err)}
	}
	return nil
}

// Check runs the health check: `healthcheck [-port=N] [-uri=/path] [-timeout=D] [-interval=D]`.
// Port 0 (the default) means $PORT.
func Check(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet(Healthcheck, flag.ContinueOnError)
	port := fl.Int("port", 0, "port to check (0: $PORT)")
	uri := fl.String("uri", "", "HTTP path to GET (empty: a TCP connect)")
	timeout := fl.Duration("timeout", time.Second, "how long to keep trying")
	interval := fl.Duration("interval", 50*time.Millisecond, "wait between attempts")
	if err := fl.Parse(args); err != nil {
		return &ExitError{Code: 2, Err: err}
	}
	if *port == 0 {
		p, err := strconv.Atoi(os.Getenv("PORT"))
		if err != nil {
			return &ExitError{Code: 2, Err: errors.New("-port: not given and $PORT is not a number")}
		}
		*port = p
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var last error
	for {
		if last = probe(ctx, addr, *uri); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return &ExitError{Code: 1, Err: fmt.Errorf("failed to make %s connection to %s: %w", kind(*uri), addr, last)}
		case <-time.After(*interval):
		}
	}
}

func kind(uri string) string {
	if uri == "" {
		return "TCP"
	}
	return "HTTP"
}

func probe(ctx context.Context, addr, uri string) error {
	if uri == "" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+uri, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// Bundle writes the lifecycle tarball: the binary at self as gavel-lifecycle
// and builder, launcher and healthcheck as symlinks to it.
func Bundle(self, out string) error {
	bin, err := os.ReadFile(self)
	if err != nil {
		return fmt.Errorf("reading %s: %w", self, err)
	}
	return writeTarGz(out, func(tw *tar.Writer) error {
		if err := addFile(tw, Binary, bin, 0o755); err != nil {
			return err
		}
		for _, name := range []string{Builder, Launcher, Healthcheck} {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: Binary, Mode: 0o777, ModTime: time.Now()}); err != nil {
				return err
			}
		}
		return nil
	})
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func writeTarGz(path string, fill func(*tar.Writer) error) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	if err := fill(tw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func addFile(tw *tar.Writer, name string, data []byte, mode int64) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: mode, ModTime: time.Now()}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// addDir adds the tree at dir under prefix, keeping modes and symlinks.
func addDir(tw *tar.Writer, dir, prefix string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = name
		if d.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
}

// Main dispatches on the name the binary runs as (builder, launcher,
// healthcheck) or on its first argument (those, or bundle -o FILE), and
// returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	name := filepath.Base(args[0])
	rest := args[1:]
	if name != Builder && name != Launcher && name != Healthcheck {
		if len(rest) == 0 {
			fmt.Fprintln(stderr, "usage: gavel-lifecycle builder|launcher|healthcheck|bundle -o FILE [args]")
			return 2
		}
		name, rest = rest[0], rest[1:]
	}
	var err error
	switch name {
	case Builder:
		err = Build(rest, stdout)
	case Launcher:
		err = Launch(rest)
	case Healthcheck:
		err = Check(context.Background(), rest)
	case "bundle":
		fl := flag.NewFlagSet("bundle", flag.ContinueOnError)
		out := fl.String("o", "", "the lifecycle tarball to write; required")
		if err = fl.Parse(rest); err == nil && *out == "" {
			err = &ExitError{Code: 2, Err: errors.New("bundle: -o FILE is required")}
		}
		if err == nil {
			var self string
			if self, err = os.Executable(); err == nil {
				err = Bundle(self, *out)
			}
		}
	default:
		err = &ExitError{Code: 2, Err: fmt.Errorf("unknown program %q: want builder, launcher, healthcheck or bundle", name)}
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}
