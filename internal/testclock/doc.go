// Package testclock is the one fake clock of the tests: servers, stores
// and the middleware take time as an input (Options.Now, Config.Now, the
// `now` of store methods; house rule 5), and tests hand them Clock.Now and
// move it with Advance instead of sleeping.
package testclock
