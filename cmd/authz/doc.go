// Command authz is the authorization server and its administration tool.
//
//	authz serve [--dev]              run the server
//	authz migrate                    apply database migrations
//	authz client create|update|list|show|delete
//	authz user create|set-password|delete|list
//	authz keys rotate                make a new signing key current
//	authz token initial-access create
//
// Every subcommand reads the same configuration (flags and AUTHZ_*
// environment variables; see README).
package main
