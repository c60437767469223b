// Package natstest runs a real NATS server in the test process and a fake
// router that records what the route emitter publishes and can play
// gorouter's side of the greet/start handshake. For tests only.
package natstest
