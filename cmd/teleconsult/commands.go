package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"teleconsult/audit"
	"teleconsult/auth"
	"teleconsult/store"
	"teleconsult/vault"
)

func runMigrate(ctx context.Context, args []string) error {
	var cfg Config
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	bindCommon(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.finish(); err != nil {
		return err
	}
	db, err := openStore(ctx, &cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	v, err := db.Version(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("database schema at version %d\n", v)
	return nil
}

// readPassword reads one line from r (the admin's password, never a flag,
// so it stays out of shell history and process lists).
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("no password on standard input")
	}
	return pw, nil
}

func runAdmin(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New("usage: teleconsult admin create --role practitioner|pharmacist|admin --email E --name N (password on standard input)")
	}
	var cfg Config
	var role, email, name, lang string
	fs := flag.NewFlagSet("admin create", flag.ContinueOnError)
	bindCommon(fs, &cfg)
	fs.StringVar(&role, "role", "", "practitioner, pharmacist or admin")
	fs.StringVar(&email, "email", "", "email address (the login)")
	fs.StringVar(&name, "name", "", "full name")
	fs.StringVar(&lang, "language", "fr", "fr or en")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch role {
	case auth.RolePractitioner, auth.RolePharmacist, auth.RoleAdmin:
	default:
		return errors.New("--role must be practitioner, pharmacist or admin (patients sign up themselves)")
	}
	if email == "" || name == "" {
		return errors.New("--email and --name are required")
	}
	if err := cfg.finish(); err != nil {
		return err
	}
	pw, err := readPassword(stdin)
	if err != nil {
		return err
	}
	db, err := openStore(ctx, &cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	acct, err := auth.NewService(db, auth.DefaultConfig, nil).Create(ctx, role, email, pw, name, lang)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s %s (%s)\n", acct.Role, acct.Email, acct.ID)
	return nil
}

func runKeys(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "rotate" {
		return errors.New("usage: teleconsult keys rotate")
	}
	var cfg Config
	fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
	bindCommon(fs, &cfg)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := cfg.finish(); err != nil {
		return err
	}
	db, err := openStore(ctx, &cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	var kr *vault.StaticKeyring
	if cfg.MasterKey != "" {
		// The operator put the new key first in MASTER_KEY: re-wrap to it.
		kr, err = vault.ParseKeyring(cfg.MasterKey)
	} else {
		var id string
		if id, err = vault.PrependKeyFile(cfg.MasterKeyFile); err == nil {
			fmt.Printf("added master key %s to %s\n", id, cfg.MasterKeyFile)
			kr, err = vault.LoadKeyringFile(cfg.MasterKeyFile, false)
		}
	}
	if err != nil {
		return err
	}
	n, err := vault.New(kr, db).Rotate(ctx, db)
	if err != nil {
		return err
	}
	fmt.Printf("re-wrapped %d data keys under master key %s; keep the old keys until every node has restarted\n", n, kr.CurrentID())
	return nil
}

func runAudit(ctx context.Context, args []string) error { return auditVerify(ctx, args, os.Stdout) }

// auditVerify is `teleconsult audit verify`, writing its verdict to out.
func auditVerify(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("usage: teleconsult audit verify")
	}
	var cfg Config
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	bindCommon(fs, &cfg)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := cfg.finish(); err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	// Seal what is committed first, so that the chain checked is as long
	// as it can be; a node's sealer running now leaves the rest unsealed.
	if _, err := audit.Seal(ctx, db.Pool); err != nil {
		return err
	}
	rep, err := audit.Verify(ctx, db.Pool)
	if err != nil {
		return fmt.Errorf("%w (after %d good rows)", err, rep.Sealed)
	}
	fmt.Fprintf(out, "audit log verified: %d rows sealed, chain intact; %d waiting to be sealed\n", rep.Sealed, rep.Unsealed)
	return nil
}
