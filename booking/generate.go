package booking

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"teleconsult/store"
)

// genCity is a city the generator places practitioners in, weighted by
// (roughly) its number of doctors.
type genCity struct {
	name     string
	postcode string // the first one; Paris, Lyon and Marseille get districts
	lat, lon float64
	weight   int
	spread   int // number of district postcodes (0: one postcode)
}

var genCities = []genCity{
	{"Paris", "75001", 48.8566, 2.3522, 30, 20}, {"Marseille", "13001", 43.2965, 5.3698, 9, 16},
	{"Lyon", "69001", 45.7640, 4.8357, 8, 9}, {"Toulouse", "31000", 43.6047, 1.4442, 6, 0},
	{"Nice", "06000", 43.7102, 7.2620, 5, 0}, {"Nantes", "44000", 47.2184, -1.5536, 4, 0},
	{"Montpellier", "34000", 43.6108, 3.8767, 4, 0}, {"Strasbourg", "67000", 48.5734, 7.7521, 4, 0},
	{"Bordeaux", "33000", 44.8378, -0.5792, 5, 0}, {"Lille", "59000", 50.6292, 3.0573, 5, 0},
	{"Rennes", "35000", 48.1173, -1.6778, 3, 0}, {"Reims", "51100", 49.2583, 4.0317, 2, 0},
	{"Toulon", "83000", 43.1242, 5.9280, 2, 0}, {"Saint-Étienne", "42000", 45.4397, 4.3872, 2, 0},
	{"Le Havre", "76600", 49.4944, 0.1079, 2, 0}, {"Grenoble", "38000", 45.1885, 5.7245, 3, 0},
	{"Dijon", "21000", 47.3220, 5.0415, 2, 0}, {"Angers", "49000", 47.4784, -0.5632, 2, 0},
	{"Nîmes", "30000", 43.8367, 4.3601, 2, 0}, {"Clermont-Ferrand", "63000", 45.7772, 3.0870, 2, 0},
	{"Tours", "37000", 47.3941, 0.6848, 2, 0}, {"Limoges", "87000", 45.8336, 1.2611, 1, 0},
	{"Amiens", "80000", 49.8941, 2.2958, 1, 0}, {"Metz", "57000", 49.1193, 6.1757, 1, 0},
	{"Besançon", "25000", 47.2378, 6.0241, 1, 0}, {"Perpignan", "66000", 42.6887, 2.8948, 1, 0},
	{"Orléans", "45000", 47.9030, 1.9093, 1, 0}, {"Caen", "14000", 49.1829, -0.3707, 1, 0},
	{"Rouen", "76000", 49.4432, 1.0999, 2, 0}, {"Nancy", "54000", 48.6921, 6.1844, 2, 0},
	{"Brest", "29200", 48.3904, -4.4861, 1, 0}, {"Poitiers", "86000", 46.5802, 0.3404, 1, 0},
	{"Pau", "64000", 43.2951, -0.3708, 1, 0}, {"La Rochelle", "17000", 46.1603, -1.1511, 1, 0},
	{"Avignon", "84000", 43.9493, 4.8055, 1, 0}, {"Annecy", "74000", 45.8992, 6.1294, 1, 0},
}

var (
	genFamily = []string{"Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau", "Laurent",
		"Simon", "Michel", "Lefebvre", "Leroy", "Roux", "David", "Bertrand", "Morel", "Fournier", "Girard", "Bonnet", "Dupont",
		"Lambert", "Fontaine", "Rousseau", "Vincent", "Muller", "Lefèvre", "Faure", "André", "Mercier", "Blanc", "Guérin", "Boyer"}
	genGiven = []string{"Marie", "Jean", "Sophie", "Pierre", "Claire", "Nicolas", "Julie", "Thomas", "Camille", "Antoine",
		"Léa", "Hugo", "Chloé", "Lucas", "Inès", "Karim", "Sarah", "Mehdi", "Anne", "Paul", "Émilie", "Yasmine", "Louis", "Manon"}
	genLanguages = [][]string{{"fr"}, {"fr"}, {"fr"}, {"fr", "en"}, {"fr", "en"}, {"fr", "es"}, {"fr", "ar"}, {"fr", "de"}, {"fr", "en", "it"}, {"fr", "pt"}}
)

// genType is a generated consultation type with its weekly hours.
type genType struct {
	id       string
	mode     string
	duration int
	fee      int
	hours    []Range
	next     *time.Time
}

// genPractitioner is one generated practitioner.
type genPractitioner struct {
	id, name, specialty, city, postcode string
	lat, lon                            float64
	languages                           []string
	types                               []genType
	booked                              []Slot // on types[0]
	patient                             []int  // index of the patient of each booked slot
}

// generatedPatients is how many patient accounts hold the generated
// appointments.
const generatedPatients = 1000

// GenerateDirectory adds n generated practitioners (accounts that cannot
// log in, profiles spread over French cities and specialties, one to
// three consultation types, weekly opening hours, and a few booked
// appointments each), with their next free slots precomputed, using COPY.
// It is meant for demos and benchmarks at Doctolib's scale. Running it
// again with the same seed does nothing.
func GenerateDirectory(ctx context.Context, db *store.DB, n int, seed int64) error {
	if n <= 0 {
		return nil
	}
	marker := fmt.Sprintf("gen-%d-0@directory.test", seed)
	if _, _, err := store.AccountByEmail(ctx, db.Pool, marker); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x7e1ec0))
	now := time.Now().UTC().Truncate(time.Minute)
	paris, _ := time.LoadLocation("Europe/Paris")
	totalWeight := 0
	for _, c := range genCities {
		totalWeight += c.weight
	}
	patients := make([]string, generatedPatients)
	for i := range patients {
		patients[i] = store.NewUUID()
	}
	ps := make([]genPractitioner, n)
	for i := range ps {
		p := &ps[i]
		p.id = store.NewUUID()
		p.name = "Dr " + genGiven[rng.IntN(len(genGiven))] + " " + genFamily[rng.IntN(len(genFamily))]
		// General practice is a third of all practitioners, as in France.
		if rng.IntN(3) == 0 {
			p.specialty = "general_practice"
		} else {
			p.specialty = Specialties[1+rng.IntN(len(Specialties)-1)].Code
		}
		w := rng.IntN(totalWeight)
		var c genCity
		for _, c = range genCities {
			if w < c.weight {
				break
			}
			w -= c.weight
		}
		p.city, p.postcode = c.name, c.postcode
		if c.spread > 0 {
			p.postcode = fmt.Sprintf("%s%02d", c.postcode[:3], 1+rng.IntN(c.spread))
		}
		p.lat = c.lat + (rng.Float64()-0.5)*0.12
		p.lon = c.lon + (rng.Float64()-0.5)*0.16
		p.languages = genLanguages[rng.IntN(len(genLanguages))]
		// Weekly pattern: Monday to Friday (or Saturday), mornings and
		// afternoons that vary a little.
		lastDay := time.Friday
		if rng.IntN(4) == 0 {
			lastDay = time.Saturday
		}
		mStart, mEnd := 8*60+30*rng.IntN(3), 12*60+30*rng.IntN(2)
		aStart, aEnd := 14*60+30*rng.IntN(2), 17*60+60*rng.IntN(3)
		dayOff := time.Weekday(1 + rng.IntN(5)) // one afternoon off
		ntypes := 1 + rng.IntN(3)
		for t := 0; t < ntypes; t++ {
			gt := genType{id: store.NewUUID(), mode: "in_person", duration: []int{15, 20, 30}[rng.IntN(3)]}
			if t == 1 || ntypes == 1 && rng.IntN(3) == 0 {
				gt.mode = "video"
			}
			if rng.IntN(3) > 0 {
				gt.fee = []int{2500, 3000, 5000, 6000}[rng.IntN(4)]
			}
			for d := time.Monday; d <= lastDay; d++ {
				if gt.mode == "video" && t > 0 {
					// A video type beside in-person ones: evenings only.
					gt.hours = append(gt.hours, Range{Weekday: d, Start: aEnd, End: aEnd + 60})
					continue
				}
				gt.hours = append(gt.hours, Range{Weekday: d, Start: mStart, End: mEnd})
				if d != dayOff && d != time.Saturday {
					gt.hours = append(gt.hours, Range{Weekday: d, Start: aStart, End: aEnd})
				}
			}
			p.types = append(p.types, gt)
		}
		// A few booked appointments on the first type over the coming
		// week; half the practitioners have their first slot taken.
		r0 := Rules{Location: paris, Hours: p.types[0].hours, Duration: time.Duration(p.types[0].duration) * time.Minute,
			Horizon: 60 * 24 * time.Hour, MinNotice: 2 * time.Hour}
		week := Slots(r0, nil, now, now.Add(7*24*time.Hour), now)
		if len(week) > 0 && rng.IntN(2) == 0 {
			p.booked = append(p.booked, week[0])
		}
		for k := rng.IntN(4); k > 0 && len(week) > 1; k-- {
			s := week[1+rng.IntN(len(week)-1)]
			dup := false
			for _, b := range p.booked {
				dup = dup || b.Start.Equal(s.Start)
			}
			if !dup {
				p.booked = append(p.booked, s)
			}
		}
		for range p.booked {
			p.patient = append(p.patient, rng.IntN(generatedPatients))
		}
		var busy []Interval
		for _, b := range p.booked {
			busy = append(busy, Interval{Start: b.Start, End: b.End})
		}
		for t := range p.types {
			r := Rules{Location: paris, Hours: p.types[t].hours, Duration: time.Duration(p.types[t].duration) * time.Minute,
				Horizon: 60 * 24 * time.Hour, MinNotice: 2 * time.Hour}
			if s, ok := NextSlot(r, busy, now); ok {
				at := s.Start
				p.types[t].next = &at
			}
		}
	}

	debugf("generated in memory")
	return db.Tx(ctx, func(tx pgx.Tx) error {
		copyRows := func(table string, cols []string, rows [][]any) error {
			t0 := time.Now()
			defer func() { debugf("copy %s: %d rows in %v", table, len(rows), time.Since(t0)) }()
			_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows))
			if err != nil {
				return fmt.Errorf("booking: generate %s: %w", table, err)
			}
			return nil
		}
		// Accounts: generated practitioners cannot log in ("!" is no hash).
		var rows [][]any
		for i, id := range patients {
			rows = append(rows, []any{id, fmt.Sprintf("gen-%d-patient-%d@directory.test", seed, i), fmt.Sprintf("Patient %d", i), "patient", "!", "fr"})
		}
		for i := range ps {
			rows = append(rows, []any{ps[i].id, fmt.Sprintf("gen-%d-%d@directory.test", seed, i), ps[i].name, "practitioner", "!", "fr"})
		}
		if err := copyRows("accounts", []string{"id", "email", "name", "role", "password_hash", "language"}, rows); err != nil {
			return err
		}
		rows = rows[:0]
		for i := range ps {
			p := &ps[i]
			var next, nextVideo *time.Time
			video := false
			for _, t := range p.types {
				if t.next != nil && (next == nil || t.next.Before(*next)) {
					next = t.next
				}
				if t.mode == "video" {
					video = true
					if t.next != nil && (nextVideo == nil || t.next.Before(*nextVideo)) {
						nextVideo = t.next
					}
				}
			}
			rows = append(rows, []any{p.id, p.specialty, fmt.Sprintf("1%010d", i), fmt.Sprintf("%d rue de la République", 1+i%150),
				p.city, p.postcode, p.lat, p.lon, p.languages, "Consultations sur rendez-vous.", "+33100000000", "Europe/Paris",
				next, nextVideo, video})
		}
		if err := copyRows("practitioners", []string{"account_id", "specialty", "rpps", "address", "city", "postcode", "latitude", "longitude",
			"languages", "presentation", "phone", "time_zone", "next_free_at", "next_video_free_at", "offers_video"}, rows); err != nil {
			return err
		}
		rows = rows[:0]
		for i := range ps {
			for _, t := range ps[i].types {
				name := "Consultation"
				if t.mode == "video" {
					name = "Téléconsultation"
				}
				rows = append(rows, []any{t.id, ps[i].id, name, t.mode, t.duration, t.fee, "EUR", true, true, t.next})
			}
		}
		if err := copyRows("consultation_types", []string{"id", "practitioner_id", "name", "mode", "duration_minutes", "fee_cents",
			"currency", "new_patients", "active", "next_free_at"}, rows); err != nil {
			return err
		}
		rows = nil
		src := &hoursSource{ps: ps}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"opening_hours"}, []string{"practitioner_id", "consultation_type_id", "weekday", "start_time", "end_time"}, src); err != nil {
			return fmt.Errorf("booking: generate opening_hours: %w", err)
		}
		for i := range ps {
			p := &ps[i]
			t := p.types[0]
			for k, b := range p.booked {
				rows = append(rows, []any{store.NewUUID(), p.id, t.id, patients[p.patient[k]], t.mode, b.Start, b.End, store.StatusConfirmed, t.fee, "EUR"})
			}
		}
		if err := copyRows("appointments", []string{"id", "practitioner_id", "consultation_type_id", "patient_id", "mode",
			"starts_at", "ends_at", "status", "fee_cents", "currency"}, rows); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `ANALYZE accounts, practitioners, consultation_types, opening_hours, appointments`)
		return err
	})
}

// hoursSource streams opening hours rows to COPY without holding them all.
type hoursSource struct {
	ps      []genPractitioner
	p, t, h int
	row     []any
}

func (s *hoursSource) Next() bool {
	for s.p < len(s.ps) {
		types := s.ps[s.p].types
		if s.t < len(types) {
			if s.h < len(types[s.t].hours) {
				r := types[s.t].hours[s.h]
				s.row = []any{s.ps[s.p].id, types[s.t].id, int16(r.Weekday), pgClock(r.Start), pgClock(r.End)}
				s.h++
				return true
			}
			s.t, s.h = s.t+1, 0
			continue
		}
		s.p, s.t, s.h = s.p+1, 0, 0
	}
	return false
}

func (s *hoursSource) Values() ([]any, error) { return s.row, nil }
func (s *hoursSource) Err() error             { return nil }

func pgClock(min int) pgtype.Time {
	return pgtype.Time{Microseconds: int64(min) * 60_000_000, Valid: true}
}

var debugf = func(format string, args ...any) {}
