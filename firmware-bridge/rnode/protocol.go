// Package rnode drives a LoRa modem running RNode firmware over its KISS
// serial protocol: detection, firmware/platform/MCU queries, radio
// configuration with read-back verification, the firmware's airtime locks,
// data frames with RSSI/SNR, channel statistics and error reports.
//
// Every command byte is cited to its public source in
// docs/firmware-bridge.md (RNode_Firmware Framing.h and Reticulum's
// RNodeInterface.py). The same constants serve the virtual modem in
// firmware-bridge/vradio.
package rnode

import (
	"github.com/openmeshd/meshd/transport/lora/airtime"
)

// KISS command bytes (RNode_Firmware Framing.h).
const (
	CmdData       = 0x00
	CmdFrequency  = 0x01
	CmdBandwidth  = 0x02
	CmdTxPower    = 0x03
	CmdSF         = 0x04
	CmdCR         = 0x05
	CmdRadioState = 0x06
	CmdRadioLock  = 0x07
	CmdDetect     = 0x08
	CmdImplicit   = 0x09
	CmdLeave      = 0x0A
	CmdSTALock    = 0x0B
	CmdLTALock    = 0x0C
	CmdPromisc    = 0x0E
	CmdReady      = 0x0F
	CmdStatRX     = 0x21
	CmdStatTX     = 0x22
	CmdStatRSSI   = 0x23
	CmdStatSNR    = 0x24
	CmdStatCHTM   = 0x25
	CmdStatPHYPRM = 0x26
	CmdStatBat    = 0x27
	CmdStatCSMA   = 0x28
	CmdStatTemp   = 0x29
	CmdBlink      = 0x30
	CmdRandom     = 0x40
	CmdBoard      = 0x47
	CmdPlatform   = 0x48
	CmdMCU        = 0x49
	CmdFWVersion  = 0x50
	CmdReset      = 0x55
	CmdError      = 0x90
	CmdUnknown    = 0xFE

	DetectReq  = 0x73
	DetectResp = 0x46

	RadioStateOff = 0x00
	RadioStateOn  = 0x01
	RadioStateAsk = 0xFF // query without changing (also for TX power, SF, CR)

	ResetByte = 0xF8
	LeaveByte = 0xFF
)

// Error codes carried by CmdError (Framing.h).
const (
	ErrorInitRadio    = 0x01
	ErrorTxFailed     = 0x02
	ErrorEEPROMLocked = 0x03
	ErrorQueueFull    = 0x04
	ErrorMemoryLow    = 0x05
	ErrorModemTimeout = 0x06
)

// Platforms and MCUs (Framing.h / Reticulum RNodeInterface.py).
const (
	PlatformAVR   = 0x90
	PlatformESP32 = 0x80
	PlatformNRF52 = 0x70
	MCU1284P      = 0x91
	MCU2560       = 0x92
	MCUESP32      = 0x81
	MCUNRF52      = 0x71
)

// Protocol numbers.
const (
	// RSSIOffset is subtracted from the RSSI byte (RNodeInterface.py
	// RSSI_OFFSET = 157).
	RSSIOffset = 157
	// MaxPayload is what one host frame may carry to fit one LoRa packet:
	// 255 minus RNode's one-byte on-air header (Config.h SINGLE_MTU,
	// HEADER_L).
	MaxPayload = 254
	// HeaderLen is the firmware's on-air header.
	HeaderLen = 1
	// MinFirmware is the oldest firmware whose protocol this driver speaks
	// (RNodeInterface.py REQUIRED_FW_VER 1.52).
	MinFirmwareMajor, MinFirmwareMinor = 1, 52
)

func platformName(p byte) string {
	switch p {
	case PlatformAVR:
		return "avr"
	case PlatformESP32:
		return "esp32"
	case PlatformNRF52:
		return "nrf52"
	}
	return "unknown"
}

func mcuName(m byte) string {
	switch m {
	case MCU1284P:
		return "atmega1284p"
	case MCU2560:
		return "atmega2560"
	case MCUESP32:
		return "esp32"
	case MCUNRF52:
		return "nrf52"
	}
	return "unknown"
}

// ErrorName names a firmware error code.
func ErrorName(code byte) string {
	switch code {
	case ErrorInitRadio:
		return "radio init failed"
	case ErrorTxFailed:
		return "transmit failed"
	case ErrorEEPROMLocked:
		return "EEPROM locked"
	case ErrorQueueFull:
		return "queue full"
	case ErrorMemoryLow:
		return "memory low"
	case ErrorModemTimeout:
		return "modem timeout"
	}
	return "unknown error"
}

// Modulation returns the airtime.Modulation an RNode programs for these
// settings: CRC on, explicit header, automatic low-data-rate optimisation,
// and RNode's preamble — enough symbols for 24 ms (6 ms above 30 kbit/s),
// never fewer than 18 (RNode_Firmware Config.h lines 84-87, Utilities.h
// updateBitrate). chip selects the SF5/SF6 formula (SX126x for
// SX1262/SX1268 boards).
func Modulation(sf, bandwidthHz, cr int, chip airtime.Chip) airtime.Modulation {
	m := airtime.Modulation{SF: sf, BandwidthHz: bandwidthHz, CodingRate: cr, Chip: chip}
	if m.Validate() != nil {
		return m
	}
	targetUs := int64(24000)
	if m.Bitrate() > 30000 {
		targetUs -= 18000
	}
	// symbols = ceil(target / Tsym), Tsym = 2^SF / BW s.
	sym := (targetUs*int64(bandwidthHz) + (int64(1)<<sf)*1000000 - 1) / ((int64(1) << sf) * 1000000)
	if sym < 18 {
		sym = 18
	}
	m.PreambleSymbols = int(sym)
	return m
}
