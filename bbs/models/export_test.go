package models

// CloneWithoutInstance exposes cloneWithoutInstance to the tests.
var CloneWithoutInstance = cloneWithoutInstance
