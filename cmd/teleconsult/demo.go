package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"teleconsult/auth"
	"teleconsult/booking"
	"teleconsult/server"
	"teleconsult/store"
)

// DemoPassword is the password of every demo account (documented in the
// README; demo data is for trying the service, never for production).
const DemoPassword = "demo-password"

// demoAccounts are the fixed, documented demo logins.
var demoAccounts = []struct{ role, email, name string }{
	{auth.RoleAdmin, "admin@demo.test", "Admin Démo"},
	{auth.RolePatient, "patient@demo.test", "Camille Durand"},
	{auth.RolePatient, "patient2@demo.test", "Louis Bernard"},
	{auth.RolePractitioner, "dr.martin@demo.test", "Dr Sophie Martin"},
	{auth.RolePharmacist, "pharmacie@demo.test", "Pharmacie du Marché"},
}

// ensureDemoAccounts creates the demo accounts that do not exist yet.
func ensureDemoAccounts(ctx context.Context, db *store.DB) error {
	svc := auth.NewService(db, auth.DefaultConfig, nil)
	for _, a := range demoAccounts {
		lang := "fr"
		if a.email == "patient2@demo.test" {
			lang = "en"
		}
		_, err := svc.Create(ctx, a.role, a.email, DemoPassword, a.name, lang)
		if err != nil && !errors.Is(err, auth.ErrEmailTaken) {
			return fmt.Errorf("demo account %s: %w", a.email, err)
		}
	}
	return nil
}

func runDemo(ctx context.Context, args []string) error {
	var cfg Config
	var practitioners int
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	bindCommon(fs, &cfg)
	fs.IntVar(&practitioners, "practitioners", 0, "also generate this many practitioners (with hours and some bookings), e.g. 150000")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if practitioners < 0 {
		return errors.New("--practitioners must be positive")
	}
	if err := cfg.finish(); err != nil {
		return err
	}
	db, err := openStore(ctx, &cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := ensureDemoAccounts(ctx, db); err != nil {
		return err
	}
	v, err := server.OpenVault(ctx, server.Config{MasterKey: cfg.MasterKey, MasterKeyFile: cfg.MasterKeyFile}, db)
	if err != nil {
		return err
	}
	hash, err := auth.HashPassword(DemoPassword)
	if err != nil {
		return err
	}
	now := time.Now()
	if err := booking.LoadDemo(ctx, db, v, now, hash); err != nil {
		return fmt.Errorf("demo directory: %w", err)
	}
	appt, err := booking.DemoConsultNow(ctx, db, now)
	if err != nil {
		return fmt.Errorf("demo consultation: %w", err)
	}
	if practitioners > 0 {
		fmt.Printf("generating %d practitioners...\n", practitioners)
		start := time.Now()
		if err := booking.GenerateDirectory(ctx, db, practitioners, 1); err != nil {
			return fmt.Errorf("generate directory: %w", err)
		}
		fmt.Printf("generated in %s\n", time.Since(start).Round(time.Second))
	}
	fmt.Println("demo data loaded; every demo login has the password", DemoPassword)
	for _, a := range demoAccounts {
		fmt.Printf("  %-13s %s\n", a.role, a.email)
	}
	fmt.Printf("a video consultation of patient@demo.test with dr.martin@demo.test starts at %s\n", appt.StartsAt.Local().Format("15:04"))
	return nil
}
