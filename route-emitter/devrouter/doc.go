// Package devrouter is a small HTTP router for gavel dev, fed by the NATS
// registrations gorouter reads (router.register and router.unregister, the
// route emitter's messages). It routes a request by its Host header (and
// the longest registered path prefix) round-robin over the route's
// endpoints, sets X-Forwarded-For, -Proto and -Host, prunes an endpoint not
// registered again within its stale threshold, and answers 404 (no route)
// or 502 (the endpoint failed) with a body that says which and why. It
// answers router.greet and announces router.start like gorouter, so the
// route emitter re-registers at the router's interval.
//
// It is a development router, not gorouter: no TLS to backends, no route
// services, no sticky sessions, no per-route load-balancing options.
package devrouter
