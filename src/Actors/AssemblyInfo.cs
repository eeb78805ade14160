namespace ActorRing.Actors;
