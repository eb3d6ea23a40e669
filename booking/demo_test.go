package booking

import (
	"context"
	"testing"
	"time"

	"teleconsult/store"
	"teleconsult/store/storetest"
	"teleconsult/vault"
)

func TestLoadDemo(t *testing.T) {
	ctx := context.Background()
	db := storetest.New(t)
	v := vault.NewForTest(t, db)
	for _, a := range []struct{ email, role string }{{DemoDoctorEmail, "practitioner"}, {DemoPharmacistEmail, "pharmacist"}, {DemoPatientEmail, "patient"}, {DemoPatient2Email, "patient"}} {
		if _, err := store.InsertAccount(ctx, db.Pool, a.email, "Demo", a.role, "x", "fr"); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	for i := 0; i < 2; i++ {
		if err := LoadDemo(ctx, db, v, now, "hash"); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
	}
	var practitioners, types, pharmacies, profiles int
	db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM practitioners), (SELECT count(*) FROM consultation_types),
		(SELECT count(*) FROM pharmacies), (SELECT count(*) FROM patient_profiles)`).Scan(&practitioners, &types, &pharmacies, &profiles)
	if practitioners != len(demoDoctors) || types != 11 || pharmacies != 1 || profiles != 3 {
		t.Fatalf("%d practitioners, %d types, %d pharmacies, %d profiles", practitioners, types, pharmacies, profiles)
	}
	svc := New(db, v, Config{})
	for _, city := range []string{"Paris", "Lyon", "Marseille", "Bordeaux", "Lille"} {
		res, _, err := svc.Search(ctx, SearchQuery{City: city})
		if err != nil || len(res) == 0 || res[0].NextSlot == nil {
			t.Fatalf("%s: %v %+v", city, err, res)
		}
	}
	// Dr Martin can be booked within the hour, any day.
	video, _, err := svc.Search(ctx, SearchQuery{City: "Paris", VideoOnly: true, Specialty: "general_practice"})
	if err != nil || len(video) == 0 || video[0].NextSlot == nil || video[0].NextSlot.Start.After(now.Add(time.Hour)) && now.Hour() >= 6 && now.Hour() < 20 {
		t.Fatalf("Dr Martin's next video slot: %+v %v", video, err)
	}

	a, err := DemoConsultNow(ctx, db, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := DemoConsultNow(ctx, db, now.Add(time.Minute))
	if err != nil || b.ID != a.ID && now.Add(time.Minute).Truncate(15*time.Minute).Equal(now.Truncate(15*time.Minute)) {
		t.Fatalf("second call: %v %s vs %s", err, b.ID, a.ID)
	}
	if a.Status != store.StatusConfirmed || a.FeeCents != 0 || a.Mode != "video" || a.StartsAt.Sub(now) > 15*time.Minute || a.StartsAt.Before(now) {
		t.Fatalf("demo consult: %+v", a)
	}
}
