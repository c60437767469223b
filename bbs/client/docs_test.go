package client_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	bbsv1 "github.com/gavelhq/gavel/proto/gen/gavel/bbs/v1"
)

var grpcurlLine = regexp.MustCompile(`^grpcurl -plaintext (?:-d '(.*)' )?127\.0\.0\.1:8889 gavel\.bbs\.v1\.BBSService/(\w+)$`)

// Every grpcurl example of docs/grpc-api.md names a real method, its JSON is
// that method's request (no unknown field), and each unary one succeeds, in
// the page's order, against a real BBS.
func TestGRPCAPIDocExamplesWork(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "grpc-api.md"))
	require.NoError(t, err)
	service := bbsv1.File_gavel_bbs_v1_bbs_proto.Services().ByName("BBSService")
	require.NotNil(t, service)
	addr, stop := exampleBBS()
	defer stop()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "grpcurl -plaintext -d") {
			continue
		}
		m := grpcurlLine.FindStringSubmatch(line)
		require.NotNil(t, m, "an example the test does not understand: %s", line)
		method := service.Methods().ByName(protoreflect.Name(m[2]))
		require.NotNil(t, method, "no method %s", m[2])
		in, err := protoregistry.GlobalTypes.FindMessageByName(method.Input().FullName())
		require.NoError(t, err)
		req := in.New().Interface()
		require.NoError(t, protojson.Unmarshal([]byte(m[1]), req), "the JSON of %s", m[2])
		n++
		if method.IsStreamingServer() {
			continue
		}
		out, err := protoregistry.GlobalTypes.FindMessageByName(method.Output().FullName())
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = conn.Invoke(ctx, "/"+string(service.FullName())+"/"+m[2], req, out.New().Interface())
		cancel()
		require.NoError(t, err, "%s", line)
	}
	require.GreaterOrEqual(t, n, 9, "examples checked")
}
