module warden.dev/sdk

go 1.18
