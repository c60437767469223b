// Package encryption seals BBS records at rest with AES-256-GCM under named
// keys. A sealed value is a versioned envelope that names its key's label, so
// a record keeps the label it was written under and the key can rotate; a
// value without the envelope is a plaintext record and reads as it is, so an
// existing cluster can turn encryption on.
package encryption
