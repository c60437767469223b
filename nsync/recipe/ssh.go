package recipe

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	modelsv1 "github.com/gavelhq/gavel/proto/gen/gavel/models/v1"
)

// SSH constants of an app with allow_ssh.
const (
	SSHPort     = 2222
	SSHRouteKey = "diego-ssh"
)

// sshRoute is the diego-ssh route: what an SSH proxy needs to reach the instance.
type sshRoute struct {
	ContainerPort   uint32 `json:"container_port"`
	PrivateKey      string `json:"private_key"`
	HostFingerprint string `json:"host_fingerprint"`
}

// sshKeyPair generates an ed25519 key: PEM private key, its ssh public key.
func sshKeyPair() (string, ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, fmt.Errorf("generate ssh key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return "", nil, fmt.Errorf("encode ssh key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", nil, fmt.Errorf("encode ssh public key: %w", err)
	}
	return string(pem.EncodeToMemory(block)), sshPub, nil
}

// sshd builds the diego-sshd action (fresh host key, an authorized user key)
// and the diego-ssh route holding the user's private key and the host's fingerprint.
func sshd(user string, env []*modelsv1.EnvironmentVariable) (*modelsv1.Action, string, error) {
	hostKey, hostPub, err := sshKeyPair()
	if err != nil {
		return nil, "", err
	}
	userKey, userPub, err := sshKeyPair()
	if err != nil {
		return nil, "", err
	}
	action := &modelsv1.Action{Action: &modelsv1.Action_Run{Run: &modelsv1.RunAction{
		Path: LifecycleDir + "/diego-sshd",
		Args: []string{
			fmt.Sprintf("-address=0.0.0.0:%d", SSHPort),
			"-hostKey=" + hostKey,
			"-authorizedKey=" + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(userPub))),
			"-inheritDaemonEnv",
			"-logLevel=fatal",
		},
		Env: env, User: user, LogSource: "SSHD",
	}}}
	route, err := json.Marshal(sshRoute{ContainerPort: SSHPort, PrivateKey: userKey, HostFingerprint: ssh.FingerprintSHA256(hostPub)})
	if err != nil {
		return nil, "", fmt.Errorf("encode diego-ssh route: %w", err)
	}
	return action, string(route), nil
}
