//go:build race

package imapd

// raceEnabled: the race detector changes memory use (shadow memory, larger
// goroutine stacks), so memory budgets are not checked under it.
const raceEnabled = true
