module vendor.example/hello

go 1.18

require warden.dev/sdk v0.1.0

// For local builds and tests in this repository; `warden plugin pack`
// vendors the SDK into the package and drops this line.
replace warden.dev/sdk => ../../../sdk/go
