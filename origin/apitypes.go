package origin

import "github.com/updraft-cdn/updraft/origin/api"

// The operator API's wire types live in package origin/api, which the
// client (origin/client) shares without importing the server.
type (
	AppOptions       = api.AppOptions
	AuditPage        = api.AuditPage
	HistoryPage      = api.HistoryPage
	AppSettings      = api.AppSettings
	CreateKeyRequest = api.CreateKeyRequest
	CreateKeyResult  = api.CreateKeyResult
	KeyInfo          = api.KeyInfo
	BundleInfo       = api.BundleInfo
	DeltaStatus      = api.DeltaStatus
	CohortMemberList = api.CohortMemberList
	DeviceCount      = api.DeviceCount
	DeviceDetail     = api.DeviceDetail
	DeviceList       = api.DeviceList
	DeviceRequest    = api.DeviceRequest
	EncryptedMeta    = api.EncryptedMeta
	GCResult         = api.GCResult
	GuardInfo        = api.GuardInfo
	GuardStatus      = api.GuardStatus
	RebuildRequest   = api.RebuildRequest
	Resolution       = api.Resolution
	RolloutRequest   = api.RolloutRequest
	RotateKeyRequest = api.RotateKeyRequest
	RotateKeyResult  = api.RotateKeyResult
	Series           = api.Series
	StatsReport      = api.StatsReport
	VersionStats     = api.VersionStats
	CohortStats      = api.CohortStats
	AdoptionReport   = api.AdoptionReport
	ReleaseAdoption  = api.ReleaseAdoption
	SegmentAdoption  = api.SegmentAdoption
	SegmentTiming    = api.SegmentTiming
)
