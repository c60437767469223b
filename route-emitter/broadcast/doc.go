// Package broadcast schedules the route emitter's full-table re-broadcasts
// by gorouter's handshake. At start it subscribes to router.start and
// publishes router.greet with a private reply subject every GreetInterval
// (1 s) until a router answers or GreetAttempts (30) pass. The answer, and
// every later router.start, carries minimumRegisterIntervalInSeconds: the
// scheduler then waits a random jitter in [0, JitterFactor × interval),
// broadcasts once, and broadcasts again every interval. With no router
// answering it keeps the default interval (20 s) and keeps listening; unlike
// Diego it does not exit, so the emitter survives a routing tier that starts
// after it.
package broadcast
