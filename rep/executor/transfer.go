package executor

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gavelhq/gavel/rep/backend"
)

// downloader fetches artifacts over HTTP, verifying checksums and caching by key.
type downloader struct {
	client   *http.Client
	dir      string // cache directory; "" disables the cache
	maxBytes int64
	sem      chan struct{}

	mu   sync.Mutex // guards the cache directory
	keys map[string]*sync.Mutex
}

type cacheMeta struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

func newDownloader(client *http.Client, dir string, maxBytes int64, concurrency int) *downloader {
	return &downloader{client: client, dir: dir, maxBytes: maxBytes, sem: make(chan struct{}, concurrency), keys: map[string]*sync.Mutex{}}
}

func newHash(algorithm string) (hash.Hash, error) {
	switch strings.ToLower(algorithm) {
	case "":
		return nil, nil
	case "md5":
		return md5.New(), nil
	case "sha1":
		return sha1.New(), nil
	case "sha256":
		return sha256.New(), nil
	default:
		return nil, fmt.Errorf("unsupported checksum algorithm %q", algorithm)
	}
}

// fetch returns an open file holding the artifact; the caller closes it.
func (d *downloader) fetch(ctx context.Context, url, cacheKey, algorithm, checksum string) (*os.File, error) {
	if _, err := newHash(algorithm); err != nil {
		return nil, err
	}
	if algorithm != "" && checksum == "" {
		return nil, fmt.Errorf("checksum algorithm %s given without a checksum value", algorithm)
	}
	select {
	case d.sem <- struct{}{}:
		defer func() { <-d.sem }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if d.dir == "" || cacheKey == "" {
		return d.download(ctx, url, algorithm, checksum, nil, "")
	}
	lock := d.keyLock(cacheKey)
	lock.Lock()
	defer lock.Unlock()

	sum := sha256.Sum256([]byte(cacheKey))
	base := filepath.Join(d.dir, hex.EncodeToString(sum[:]))
	var meta *cacheMeta
	if data, err := os.ReadFile(base + ".json"); err == nil {
		var m cacheMeta
		if json.Unmarshal(data, &m) == nil && m.URL == url {
			meta = &m
		}
	}
	f, err := d.download(ctx, url, algorithm, checksum, meta, base)
	if err != nil {
		return nil, err
	}
	d.evict()
	return f, nil
}

func (d *downloader) keyLock(key string) *sync.Mutex {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.keys[key]
	if !ok {
		l = &sync.Mutex{}
		d.keys[key] = l
	}
	return l
}

// download GETs url. With meta, the request is conditional and a 304 reuses
// base; with base, a fresh body is stored there.
func (d *downloader) download(ctx context.Context, url, algorithm, checksum string, meta *cacheMeta, base string) (*os.File, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if meta != nil {
		if meta.ETag != "" {
			req.Header.Set("If-None-Match", meta.ETag)
		}
		if meta.LastModified != "" {
			req.Header.Set("If-Modified-Since", meta.LastModified)
		}
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && meta != nil {
		f, err := os.Open(base)
		if err == nil {
			if err = verify(f, algorithm, checksum); err == nil {
				now := time.Now()
				_ = os.Chtimes(base, now, now)
				return f, nil
			}
			f.Close()
		}
		return nil, fmt.Errorf("cached copy unusable: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	dir := d.dir
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, "download-*")
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, resp.Body); err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if err := verify(tmp, algorithm, checksum); err != nil {
		return nil, err
	}
	if base != "" {
		if err := os.Rename(tmp.Name(), base); err != nil {
			return nil, err
		}
		m := cacheMeta{URL: url, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
		data, _ := json.Marshal(m)
		_ = os.WriteFile(base+".json", data, 0o644)
	} else {
		// Unlinked while open: the data lives until the caller closes it.
		os.Remove(tmp.Name())
	}
	keep = true
	return tmp, nil
}

// verify hashes f from the start, then rewinds it.
func verify(f *os.File, algorithm, checksum string) error {
	h, err := newHash(algorithm)
	if err != nil || h == nil {
		_, serr := f.Seek(0, io.SeekStart)
		return errors.Join(err, serr)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, checksum) {
		return fmt.Errorf("checksum mismatch: expected %s %s, got %s", strings.ToLower(algorithm), checksum, got)
	}
	return nil
}

// evict removes the least recently used cache entries above maxBytes.
func (d *downloader) evict() {
	if d.maxBytes <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return
	}
	type entry struct {
		path string
		size int64
		mod  time.Time
	}
	var files []entry
	var total int64
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), "download-") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		files = append(files, entry{filepath.Join(d.dir, e.Name()), info.Size(), info.ModTime()})
		total += info.Size()
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod.Before(files[j].mod) })
	for _, f := range files {
		if total <= d.maxBytes {
			return
		}
		os.Remove(f.path)
		os.Remove(f.path + ".json")
		total -= f.size
	}
}

// streamArchive streams a tar or gzipped tar into the container at path.
func streamArchive(ctx context.Context, c backend.Container, f io.Reader, path, user string) error {
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gunzip: %w", err)
		}
		defer gz.Close()
		r = gz
	}
	return c.StreamIn(ctx, backend.StreamInSpec{Path: path, User: user, TarStream: r})
}

// readFirstFile streams path out of the container and returns a reader of the
// first regular file of the tar.
func readFirstFile(ctx context.Context, c backend.Container, path, user string) (io.ReadCloser, error) {
	rc, err := c.StreamOut(ctx, backend.StreamOutSpec{Path: path, User: user})
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			rc.Close()
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s: no file in stream", path)
			}
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			return struct {
				io.Reader
				io.Closer
			}{tr, rc}, nil
		}
	}
}

// upload sends the file at path in the container to url.
func upload(ctx context.Context, client *http.Client, method string, c backend.Container, path, user, url string) error {
	body, err := readFirstFile(ctx, c, path, user)
	if err != nil {
		return err
	}
	defer body.Close()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
