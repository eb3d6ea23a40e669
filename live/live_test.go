package live_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/live"
	"teleconsult/store"
	"teleconsult/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func recv(t *testing.T, ch <-chan live.Event) (live.Event, bool) {
	select {
	case e := <-ch:
		return e, true
	case <-time.After(3 * time.Second):
		return live.Event{}, false
	}
}

func TestEventsCrossNodes(t *testing.T) {
	url := storetest.NewURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Two nodes: two pools, two hubs, on one database.
	var hubs []*live.Hub
	var dbs []*store.DB
	for i := 0; i < 2; i++ {
		db, err := store.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		h := live.NewHub(db)
		go h.Run(ctx)
		<-h.Ready()
		hubs, dbs = append(hubs, h), append(dbs, db)
	}
	doctor := "11111111-1111-4111-8111-111111111111"
	onA, stop := hubs[0].Subscribe(doctor)
	defer stop()
	other, stop2 := hubs[0].Subscribe("22222222-2222-4222-8222-222222222222")
	defer stop2()

	// Published through node B, received on node A.
	if err := live.Publish(ctx, dbs[1].Pool, live.Event{AccountID: doctor, Kind: "patient.waiting", Data: map[string]string{"appointment_id": "a1"}}); err != nil {
		t.Fatal(err)
	}
	e, ok := recv(t, onA)
	if !ok || e.Kind != "patient.waiting" || e.Data["appointment_id"] != "a1" {
		t.Fatalf("got %+v %v", e, ok)
	}
	// A rolled-back transaction delivers nothing.
	_ = dbs[1].Tx(ctx, func(tx pgx.Tx) error {
		live.Publish(ctx, tx, live.Event{AccountID: doctor, Kind: "rolled.back"})
		return context.Canceled
	})
	if err := live.Publish(ctx, dbs[1].Pool, live.Event{AccountID: doctor, Kind: "after"}); err != nil {
		t.Fatal(err)
	}
	if e, ok := recv(t, onA); !ok || e.Kind != "after" {
		t.Fatalf("after rollback got %+v %v", e, ok)
	}
	// Nobody else got the doctor's events.
	select {
	case e := <-other:
		t.Fatalf("another account received %+v", e)
	default:
	}
}
