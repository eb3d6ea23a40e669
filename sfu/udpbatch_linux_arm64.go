package sfu

// System call numbers of the batched socket calls on arm64.
const (
	sysRECVMMSG = 243
	sysSENDMMSG = 269
)
