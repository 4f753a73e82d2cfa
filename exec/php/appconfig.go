package php

// AppConfig is appconfig.php: it boots a Laravel app once and writes, on fd
// 3, one JSON object with the app's queue configuration (its header
// comment documents the fields). It runs as `php` reading the script from
// stdin, so it needs no file of its own.
func AppConfig() []byte {
	b, err := files.ReadFile("appconfig.php")
	if err != nil {
		panic("exec/php: appconfig.php is not embedded: " + err.Error())
	}
	return b
}

// Console is console.php: it boots a Laravel app once and does one of the
// console's operations through the app itself (its header comment lists
// them), answering on fd 3 as appconfig.php does.
func Console() []byte {
	b, err := files.ReadFile("console.php")
	if err != nil {
		panic("exec/php: console.php is not embedded: " + err.Error())
	}
	return b
}
