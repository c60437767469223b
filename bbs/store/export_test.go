package store

// SetAfterChunkHook makes s call f after each follow-up transaction of a
// split write (desire, scale, removal); an error from f interrupts the write
// there, as a crash between two transactions would. For tests only.
func SetAfterChunkHook(s *Store, f func() error) { s.hooks.afterChunk = f }
