// Package config loads daemon configuration files.
//
// Every Gavel daemon reads one JSON file (-config). [Load] decodes it
// strictly: an unknown field is an error that names the file and the field,
// so a misspelt option never silently falls back to its default. [Duration]
// lets config structs carry durations written as Go duration strings
// ("15s", "1m30s").
package config
