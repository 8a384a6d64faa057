// The `farmem.v1.Daemon` service definition, shared by farmemd (server) and client/control.ts.
import { farmem } from '../../proto/gen/farmem';
import { method } from '../util/grpc';

const S = 'farmem.v1.Daemon';
const v1 = farmem.v1;

export const DaemonService = {
  CreateRegion: method(S, 'CreateRegion', v1.CreateRegionRequest, v1.CreateRegionResponse),
  DeleteRegion: method(S, 'DeleteRegion', v1.RegionDeleteRequest, v1.RegionDeleteResponse),
  ListRegions: method(S, 'ListRegions', v1.ListRegionsRequest, v1.ListRegionsResponse),
  ShowRegion: method(S, 'ShowRegion', v1.ShowRegionRequest, v1.ShowRegionResponse),
  UpdateRegion: method(S, 'UpdateRegion', v1.UpdateRegionRequest, v1.UpdateRegionResponse),
  SyncRegion: method(S, 'SyncRegion', v1.SyncRegionRequest, v1.OperationProgress, true),
  EvictRegion: method(S, 'EvictRegion', v1.EvictRegionRequest, v1.OperationProgress, true),
  DaemonStats: method(S, 'DaemonStats', v1.DaemonStatsRequest, v1.DaemonStatsResponse),
  ListServers: method(S, 'ListServers', v1.ListServersRequest, v1.ListServersResponse),
  AddServer: method(S, 'AddServer', v1.AddServerRequest, v1.AddServerResponse),
  RemoveServer: method(S, 'RemoveServer', v1.RemoveServerRequest, v1.RemoveServerResponse),
  RegionPageMap: method(S, 'RegionPageMap', v1.RegionPageMapRequest, v1.RegionPageMapResponse),
  WarmRegion: method(S, 'WarmRegion', v1.WarmRegionRequest, v1.OperationProgress, true),
} as const;

export type DaemonMethod = keyof typeof DaemonService;
