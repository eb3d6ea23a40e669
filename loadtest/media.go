package loadtest

import (
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Synthetic payloads carry, after the codec's own first bytes, a magic
// byte, the simulcast layer and the send time, so that receivers can
// measure latency and tell layers apart. The SFU forwards RTP without
// decoding, so nothing else needs to be real.
const metaMagic = 0xA5

// metaOffset is where the metadata starts in a synthetic payload.
func metaOffset(kind webrtc.RTPCodecType, p []byte) (int, bool) {
	if kind == webrtc.RTPCodecTypeVideo {
		return 2, len(p) > 2 // VP8 payload descriptor, then one VP8 header byte
	}
	return 1, len(p) > 1 // Opus TOC byte
}

// simulcastRIDs are the layer names, cheapest first.
var simulcastRIDs = []string{"q", "h", "f"}

// Publish starts sending the synthetic camera (and microphone) and
// offers them to the server.
func (c *Client) Publish() error {
	const stream = "cam"
	var audio *webrtc.TrackLocalStaticRTP
	var layers []*webrtc.TrackLocalStaticRTP
	var videoTr *webrtc.RTPTransceiver
	var err error
	if c.cfg.Audio {
		if audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", stream); err != nil {
			return err
		}
		tr, err := c.up.AddTransceiverFromTrack(audio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return err
		}
		go drainRTCP(tr.Sender(), nil)
		c.published = append(c.published, publishedTrack{audio, -1})
	}
	if c.cfg.VideoBitrate > 0 {
		vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
		rids := []string{""}
		if c.cfg.Simulcast {
			rids = simulcastRIDs
		}
		for _, rid := range rids {
			var opts []func(*webrtc.TrackLocalStaticRTP)
			if rid != "" {
				opts = append(opts, webrtc.WithRTPStreamID(rid))
			}
			t, err := webrtc.NewTrackLocalStaticRTP(vp8, "video", stream, opts...)
			if err != nil {
				return err
			}
			layers = append(layers, t)
		}
		tr, err := c.up.AddTransceiverFromTrack(layers[0], webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return err
		}
		videoTr = tr
		for _, l := range layers[1:] {
			if err := tr.Sender().AddEncoding(l); err != nil {
				return err
			}
		}
		s := tr.Sender()
		go drainRTCP(s, func() { c.requestKeyframe(0) })
		c.published = append(c.published, publishedTrack{layers[0], 0})
		for _, rid := range rids[1:] {
			go func() {
				for {
					pkts, _, err := s.ReadSimulcastRTCP(rid)
					if err != nil {
						return
					}
					if hasPLI(pkts) {
						c.requestKeyframe(0)
					}
				}
			}()
		}
	}
	var screen *webrtc.TrackLocalStaticRTP
	if c.cfg.Screen {
		if screen, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "screen", "scr"); err != nil {
			return err
		}
		tr, err := c.up.AddTransceiverFromTrack(screen, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return err
		}
		go drainRTCP(tr.Sender(), func() { c.requestKeyframe(1) })
		c.published = append(c.published, publishedTrack{screen, 1})
	}
	if err := c.offerUp(false); err != nil {
		return err
	}
	if screen != nil {
		c.wg.Add(1)
		go c.sendVideo([]*webrtc.TrackLocalStaticRTP{screen}, nil, 1)
	}
	if audio != nil {
		c.wg.Add(1)
		go c.sendAudio(audio)
	}
	if len(layers) > 0 {
		c.wg.Add(1)
		go c.sendVideo(layers, videoTr, 0)
	}
	return nil
}

func hasPLI(pkts []rtcp.Packet) bool {
	for _, p := range pkts {
		switch p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			return true
		}
	}
	return false
}

func drainRTCP(s *webrtc.RTPSender, onPLI func()) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		if onPLI != nil && hasPLI(pkts) {
			onPLI()
		}
	}
}

// requestKeyframe asks the camera (group 0) or the screen (group 1)
// sender for a keyframe on every layer.
func (c *Client) requestKeyframe(group int) {
	c.mu.Lock()
	for i := range c.keyReq[group] {
		c.keyReq[group][i] = true
	}
	c.mu.Unlock()
}

func (c *Client) offerUp(restart bool) error {
	offer, err := c.up.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
	if err != nil {
		return err
	}
	if err := c.up.SetLocalDescription(offer); err != nil {
		return err
	}
	return c.Send(map[string]any{"type": "offer", "pc": "up", "sdp": offer.SDP, "labels": map[string]string{"cam": "camera", "scr": "screen"}})
}

// sendAudio sends a 20 ms Opus-sized packet every 20 ms.
func (c *Client) sendAudio(t *webrtc.TrackLocalStaticRTP) {
	defer c.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	seq, ts := uint16(rand.Uint32()), rand.Uint32()
	payload := make([]byte, 80)
	payload[0] = 0xfc
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		payload[1] = metaMagic
		payload[2] = 0
		binary.BigEndian.PutUint64(payload[3:], uint64(time.Now().UnixNano()))
		if t.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: true}, Payload: payload}) == nil {
			c.sentAudio.Add(1)
		}
		seq++
		ts += 960
	}
}

// maxPayload keeps packets under a common path MTU.
const maxPayload = 1100

// sendVideo sends 30 frames a second on each layer, splitting each frame
// into packets whose VP8 payload descriptor marks the frame start and,
// on keyframes, a VP8 header with the P bit clear.
//
// Simulcast layers carry the mid and rid header extensions, which is how
// the server tells the layers' SSRCs apart (as browsers do).
func (c *Client) sendVideo(layers []*webrtc.TrackLocalStaticRTP, tr *webrtc.RTPTransceiver, group int) {
	var midID, ridID uint8
	defer c.wg.Done()
	const fps = 30
	tick := time.NewTicker(time.Second / fps)
	defer tick.Stop()
	n := len(layers)
	seq := make([]uint16, n)
	rates := make([]int, n)
	for i := range layers {
		seq[i] = uint16(rand.Uint32())
		rates[i] = c.cfg.VideoBitrate >> (2 * (n - 1 - i)) // top, /4, /16
	}
	ts := rand.Uint32()
	lastKey := time.Time{}
	buf := make([]byte, maxPayload)
	var pkt rtp.Packet
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		periodic := now.Sub(lastKey) >= c.cfg.KeyframeInterval
		if periodic {
			lastKey = now
		}
		c.mu.Lock()
		var keys [3]bool
		for i := range n {
			keys[i] = periodic || c.keyReq[group][i]
			c.keyReq[group][i] = false
		}
		c.mu.Unlock()
		for i, t := range layers {
			frame := rates[i] / 8 / fps
			if keys[i] {
				frame *= 3 // keyframes are bigger
			}
			for first := true; frame > 0 || first; first = false {
				size := min(frame, maxPayload-12)
				if size < 12 {
					size = 12
				}
				frame -= size
				p := buf[:size]
				p[0] = 0x00
				p[1] = 0x01
				if first {
					p[0] = 0x10 // S: start of partition 0
					if keys[i] {
						p[1] = 0x00 // P bit clear: keyframe
					}
				}
				p[2] = metaMagic
				p[3] = byte(i)
				binary.BigEndian.PutUint64(p[4:], uint64(now.UnixNano()))
				pkt.Header = rtp.Header{Version: 2, SequenceNumber: seq[i], Timestamp: ts, Marker: frame <= 0}
				if n > 1 && tr != nil {
					if midID == 0 {
						for _, e := range tr.Sender().GetParameters().HeaderExtensions {
							switch e.URI {
							case sdp.SDESMidURI:
								midID = uint8(e.ID)
							case sdp.SDESRTPStreamIDURI:
								ridID = uint8(e.ID)
							}
						}
					}
					if midID != 0 && ridID != 0 {
						_ = pkt.Header.SetExtension(midID, []byte(tr.Mid()))
						_ = pkt.Header.SetExtension(ridID, []byte(simulcastRIDs[i]))
					}
				}
				pkt.Payload = p
				seq[i]++
				if t.WriteRTP(&pkt) == nil && i == n-1 && tr != nil {
					c.sentVideo.Add(1) // receivers get the top layer when bandwidth allows
				}
			}
		}
		ts += 90000 / fps
	}
}

// StopScreen withdraws the screen share and offers again.
func (c *Client) StopScreen() error {
	for _, tr := range c.up.GetTransceivers() {
		if s := tr.Sender(); s != nil && s.Track() != nil && s.Track().StreamID() == "scr" {
			if err := c.up.RemoveTrack(s); err != nil {
				return err
			}
		}
	}
	return c.offerUp(false)
}
