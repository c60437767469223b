package broadcast

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"code.cloudfoundry.org/clock"
	"code.cloudfoundry.org/lager/v3"
	"github.com/nats-io/nats.go"
	"github.com/tedsuo/ifrit"
)

// Subjects of the handshake.
const (
	GreetSubject = "router.greet"
	StartSubject = "router.start"
)

// Defaults of the handshake, as Diego's.
const (
	DefaultInterval      = 20 * time.Second
	DefaultJitterFactor  = 0.2
	DefaultGreetInterval = time.Second
	DefaultGreetAttempts = 30
)

// StartMessage is the payload of router.start and of the answer to router.greet.
type StartMessage struct {
	ID                               string   `json:"id"`
	Hosts                            []string `json:"hosts"`
	MinimumRegisterIntervalInSeconds int      `json:"minimumRegisterIntervalInSeconds"`
	PruneThresholdInSeconds          int      `json:"pruneThresholdInSeconds"`
}

// MaxRegisterInterval bounds the register interval a router may ask for: a
// larger one (or one that overflows a duration) makes the message invalid.
const MaxRegisterInterval = time.Hour

// maxStartMessageBytes bounds a start message.
const maxStartMessageBytes = 64 << 10

// ParseStartMessage decodes a router.start message (or a router's answer to
// router.greet) and checks its interval: at most MaxRegisterInterval.
func ParseStartMessage(data []byte) (StartMessage, error) {
	var m StartMessage
	if len(data) > maxStartMessageBytes {
		return m, fmt.Errorf("start message: must be at most %d bytes (got %d)", maxStartMessageBytes, len(data))
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return StartMessage{}, fmt.Errorf("start message: %w", err)
	}
	if m.MinimumRegisterIntervalInSeconds > int(MaxRegisterInterval/time.Second) {
		return StartMessage{}, fmt.Errorf("start message: minimumRegisterIntervalInSeconds: must be at most %d (got %d)", int(MaxRegisterInterval/time.Second), m.MinimumRegisterIntervalInSeconds)
	}
	return m, nil
}

// Interval is the register interval the message asks for, or def when it
// asks none (0 or negative).
func (m StartMessage) Interval(def time.Duration) time.Duration {
	if m.MinimumRegisterIntervalInSeconds <= 0 {
		return def
	}
	return time.Duration(m.MinimumRegisterIntervalInSeconds) * time.Second
}

// Options configure a [Scheduler].
type Options struct {
	// Conn is the NATS connection; required.
	Conn *nats.Conn
	// Broadcast is called on every tick; it must not block for long. Required.
	Broadcast func()
	// DefaultInterval is used until a router advertises one (default 20 s).
	DefaultInterval time.Duration
	// JitterFactor bounds the random wait after a router.start, as a
	// fraction of the interval (default 0.2; negative means none).
	JitterFactor float64
	// GreetInterval is the time between greets (default 1 s).
	GreetInterval time.Duration
	// GreetAttempts is how many greets are sent before giving up on an answer (default 30).
	GreetAttempts int
	// Clock; default the real clock.
	Clock clock.Clock
	// Logger; default a logger with no sinks.
	Logger lager.Logger
}

// Scheduler is an ifrit runner calling Broadcast at the routers' interval.
type Scheduler struct {
	opts   Options
	logger lager.Logger
}

var _ ifrit.Runner = (*Scheduler)(nil)

// New returns a scheduler.
func New(opts Options) *Scheduler {
	if opts.DefaultInterval <= 0 {
		opts.DefaultInterval = DefaultInterval
	}
	if opts.JitterFactor == 0 {
		opts.JitterFactor = DefaultJitterFactor
	}
	if opts.GreetInterval <= 0 {
		opts.GreetInterval = DefaultGreetInterval
	}
	if opts.GreetAttempts <= 0 {
		opts.GreetAttempts = DefaultGreetAttempts
	}
	if opts.Clock == nil {
		opts.Clock = clock.NewClock()
	}
	if opts.Logger == nil {
		opts.Logger = lager.NewLogger("broadcast")
	}
	return &Scheduler{opts: opts, logger: opts.Logger.Session("broadcast-scheduler")}
}

// Run subscribes, closes ready, greets, and schedules broadcasts until signalled.
func (s *Scheduler) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	if s.opts.Conn == nil || s.opts.Broadcast == nil {
		return fmt.Errorf("broadcast: scheduler needs a NATS connection and a broadcast function")
	}
	starts := make(chan *nats.Msg, 16)
	startSub, err := s.opts.Conn.ChanSubscribe(StartSubject, starts)
	if err != nil {
		return fmt.Errorf("broadcast: subscribing to %s: %w", StartSubject, err)
	}
	defer func() { _ = startSub.Unsubscribe() }()
	inbox := s.opts.Conn.NewRespInbox()
	replySub, err := s.opts.Conn.ChanSubscribe(inbox, starts)
	if err != nil {
		return fmt.Errorf("broadcast: subscribing to the greet reply subject: %w", err)
	}
	defer func() { _ = replySub.Unsubscribe() }()
	close(ready)

	interval := s.opts.DefaultInterval
	ticker := s.opts.Clock.NewTicker(interval)
	defer func() { ticker.Stop() }()
	greets := 0
	greetTimer := s.opts.Clock.NewTimer(0)
	defer greetTimer.Stop()
	greeted := false
	var jitterC <-chan time.Time
	var jitterTimer clock.Timer

	for {
		select {
		case <-signals:
			if jitterTimer != nil {
				jitterTimer.Stop()
			}
			return nil
		case <-greetTimer.C():
			if greeted {
				continue
			}
			if greets >= s.opts.GreetAttempts {
				s.logger.Info("no-router-answered-greet", lager.Data{"attempts": greets, "interval": interval.String()})
				continue
			}
			greets++
			if err := s.opts.Conn.PublishRequest(GreetSubject, inbox, nil); err != nil {
				s.logger.Error("greet-failed", err)
			}
			greetTimer.Reset(s.opts.GreetInterval)
		case msg := <-starts:
			if isNoResponders(msg) {
				// The NATS server's own answer to a greet that no router
				// is subscribed to: not a router start.
				s.logger.Debug("greet-not-answered", lager.Data{"subject": msg.Subject})
				continue
			}
			start, err := ParseStartMessage(msg.Data)
			if err != nil {
				s.logger.Error("bad-start-message", err, lager.Data{"subject": msg.Subject})
				continue
			}
			greeted = true
			interval = start.Interval(interval)
			s.logger.Info("router-start", lager.Data{"router": start.ID, "interval": interval.String()})
			ticker.Stop()
			jitter := time.Duration(0)
			if s.opts.JitterFactor > 0 {
				jitter = time.Duration(rand.Float64() * s.opts.JitterFactor * float64(interval))
			}
			if jitterTimer != nil {
				jitterTimer.Stop()
			}
			jitterTimer = s.opts.Clock.NewTimer(jitter)
			jitterC = jitterTimer.C()
		case <-jitterC:
			jitterC = nil
			s.opts.Broadcast()
			ticker = s.opts.Clock.NewTicker(interval)
		case <-ticker.C():
			s.opts.Broadcast()
		}
	}
}

// isNoResponders reports whether msg is the NATS server's "no responders"
// status (an empty message with the header Status: 503), which answers a
// request that no subscriber received.
func isNoResponders(msg *nats.Msg) bool {
	return len(msg.Data) == 0 && msg.Header.Get("Status") == "503"
}
